#!/bin/sh
# Prepare a clean Debian 12 machine (root, no systemd as PID 1) for the host tests:
# install the build dependencies and a libvirt daemon with the QEMU driver, start it,
# and build the tiny ACPI-honouring test guest. Safe to run again: every step checks first.
set -eu

log() { printf 'setup-host: %s\n' "$*" >&2; }
die() { printf 'setup-host: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts libvirtd)"

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

# python3 runs the FUSE stall file system (tests/fuse/stallfs.py); util-linux gives mount,
# unshare, flock and prlimit (the broken-input tests' memory limit, the package tests).
# osslsigncode and openssl sign the test-built driver images with a self-made certificate
# (src/inspect/pe.rs: real Authenticode structures). openssh-server is the sshd that fronts
# libvirtd as a remote host (tests/host_remote.rs starts its own on a free port).
# .ci/package and tests/package.rs: debootstrap (Debian 11/13 chroots), rpm (find-requires,
# rpm -qp, the scratch install), binutils (strip, objdump).
PACKAGES="libvirt-dev pkg-config libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients \
qemu-system-x86 qemu-utils libhivex-bin libwin-hivex-perl ntfs-3g attr fdisk busybox-static cpio \
python3 util-linux osslsigncode openssl openssh-server debootstrap rpm binutils"

# 1. Packages. qemu-utils must come from bookworm (7.2): the machine may carry 10.x from
#    backports, which conflicts with qemu-system-x86 7.2. libvirt-daemon-system is left out
#    on purpose (it pulls systemd).
missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing="$missing $p"
    fi
done
qemu_img_version=$(dpkg-query -W -f '${Version}' qemu-utils 2>/dev/null || true)
case "$qemu_img_version" in
    1:7.2*) ;;
    *) missing="$missing qemu-utils" ;;
esac
if [ -n "$missing" ]; then
    log "installing:$missing"
    apt-get update
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends --allow-downgrades \
        $(echo "$PACKAGES" | sed 's/qemu-utils/qemu-utils\/bookworm/')
else
    log "packages already installed"
fi

# 2. Users and groups the QEMU driver expects to exist.
for g in kvm libvirt libvirt-qemu; do
    getent group "$g" >/dev/null || groupadd --system "$g"
done
getent passwd libvirt-qemu >/dev/null ||
    useradd --system -g libvirt-qemu -G kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu

# 3. The QEMU driver runs guests as root without a security driver (no AppArmor/SELinux here).
conf=/etc/libvirt/qemu.conf
want='# Written by virtio-migrate .ci/setup-host.sh for the host tests.
user = "root"
group = "root"
security_driver = "none"'
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
    mkdir -p /etc/libvirt
    printf '%s\n' "$want" > "$conf"
    if pidof libvirtd >/dev/null 2>&1; then
        log "qemu.conf changed while libvirtd runs: restart libvirtd to apply it"
    fi
fi
mkdir -p /var/log/libvirt

# 4. Daemons.
if ! pidof virtlogd >/dev/null 2>&1; then
    log "starting virtlogd"
    virtlogd -d
fi
if ! pidof libvirtd >/dev/null 2>&1; then
    log "starting libvirtd"
    libvirtd -d
fi
timeout=${VIRTIO_MIGRATE_DAEMON_TIMEOUT:-60}
waited=0
until virsh -c qemu:///system version >/dev/null 2>&1; do
    if [ "$waited" -ge "$timeout" ]; then
        virsh -c qemu:///system version || true
        die "libvirtd did not answer on qemu:///system within ${timeout}s (see /var/log/libvirt/ and 'libvirtd -v')"
    fi
    sleep 1
    waited=$((waited + 1))
done
log "libvirtd answers on qemu:///system (waited ${waited}s)"

# 5. The tiny guest (kernel + initramfs) the host tests boot.
"$repo/tests/guest/build-tiny-guest.sh"
