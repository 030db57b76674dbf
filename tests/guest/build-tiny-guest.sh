#!/bin/sh
# Build the tiny test guest: a Debian cloud kernel and an initramfs with busybox that
#  - loads the disk/NIC/ACPI modules,
#  - prints marker lines on the serial console (ttyS0):
#      VMTEST pci <vendor>:<device>     one per PCI function
#      VMTEST block <name>              one per disk (sdX, vdX, hdX)
#      VMTEST net <ifname> <driver>     one per network interface with a device
#      VMTEST ready                     acpid listens: an ACPI power button now powers off
#      VMTEST agent PORT                (only with vmtest.agent=N) a minimal guest agent answers
#                                       guest-sync and guest-ping on the org.qemu.guest_agent.0
#                                       port, for N seconds (0: for ever), then
#      VMTEST agent-stopped             it stops answering
#      VMTEST virtio-boot reboot|panic  (only with vmtest.on_virtio_boot= on the kernel command
#                                       line) the boot disk is on virtio: resets / panics now
#  - powers off on the ACPI power button (busybox acpid, PWRF/00000080 -> poweroff -f).
# Nothing is installed on the host: the packages are fetched with `apt-get download`
# and unpacked with `dpkg-deb -x`.
#
# Output (skipped when already built by this version of the script):
#   $VIRTIO_MIGRATE_TINY_GUEST (default /var/lib/virtio-migrate-test/guest)/{vmlinuz,initrd.img,stamp}
set -eu

log() { printf 'build-tiny-guest: %s\n' "$*" >&2; }
die() { printf 'build-tiny-guest: error: %s\n' "$*" >&2; exit 1; }

out=${VIRTIO_MIGRATE_TINY_GUEST:-/var/lib/virtio-migrate-test/guest}
MODULES="button evdev ata_piix sd_mod virtio_pci virtio_blk virtio_net virtio_console"

script_sum=$(sha256sum "$0" | cut -d' ' -f1)
if [ -f "$out/stamp" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ] &&
    [ "$(sed -n 1p "$out/stamp")" = "$script_sum" ]; then
    log "already built in $out"
    exit 0
fi

kernel_pkg() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}
pkg=$(kernel_pkg)
if [ -z "$pkg" ]; then
    apt-get update >&2
    pkg=$(kernel_pkg)
fi
[ -n "$pkg" ] || die "cannot resolve linux-image-cloud-amd64 to a versioned kernel package"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# apt drops privileges to _apt for downloads: give it the directory to avoid a warning.
if getent passwd _apt >/dev/null; then chown _apt "$work"; fi
log "downloading $pkg and busybox-static"
(cd "$work" && apt-get download -q "$pkg" busybox-static >&2)
mkdir "$work/x"
for deb in "$work"/*.deb; do dpkg-deb -x "$deb" "$work/x"; done

vmlinuz=$(ls "$work"/x/boot/vmlinuz-* 2>/dev/null | head -n1)
[ -n "$vmlinuz" ] || die "no kernel image in $pkg"
kver=$(basename "$vmlinuz" | sed 's/^vmlinuz-//')
moddir="$work/x/lib/modules/$kver"
[ -d "$moddir" ] || die "no module directory for $kver"
[ -x "$work/x/bin/busybox" ] || die "no busybox in busybox-static"

# Module dependencies, dependencies first, each once (read from the modules' own
# .modinfo "depends=" field; the kernel package ships no modules.dep).
module_file() {
    f=$(find "$moddir/kernel" -name "$1.ko" -o -name "$(echo "$1" | tr _ -).ko" | head -n1)
    [ -n "$f" ] || die "module $1 not found in $kver (neither file nor built-in support is handled)"
    printf '%s\n' "$f"
}
order="$work/order"
: > "$order"
add_module() {
    grep -qx "$1" "$order" && return 0
    f=$(module_file "$1")
    deps=$(tr '\0' '\n' < "$f" | sed -n 's/^depends=//p' | head -n1 | tr ',' ' ')
    for d in $deps; do add_module "$d"; done
    grep -qx "$1" "$order" || printf '%s\n' "$1" >> "$order"
}
for m in $MODULES; do add_module "$m"; done

root="$work/root"
mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/lib/modules" "$root/etc/acpi/PWRF"
cp "$work/x/bin/busybox" "$root/bin/busybox"
while read -r m; do cp "$(module_file "$m")" "$root/lib/modules/$m.ko"; done < "$order"
cp "$order" "$root/etc/modules.order"

cat > "$root/etc/acpi/PWRF/00000080" <<'SH'
#!/bin/busybox sh
echo "VMTEST poweroff" > /dev/console
/bin/busybox poweroff -f
SH
chmod 755 "$root/etc/acpi/PWRF/00000080"

cat > "$root/init" <<'SH'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec > /dev/console 2>&1
echo "VMTEST init"
while read -r m; do insmod "/lib/modules/$m.ko" || echo "VMTEST insmod-failed $m"; done < /etc/modules.order
# Disks probe asynchronously: wait until the list of disks stops changing (at most ~10 s).
prev=""
i=0
while [ "$i" -lt 20 ]; do
    cur=$(ls /sys/block | grep -E '^(sd|vd|hd)' | tr '\n' ' ')
    [ -n "$cur" ] && [ "$cur" = "$prev" ] && break
    prev=$cur
    sleep 0.5
    i=$((i + 1))
done
for d in /sys/bus/pci/devices/*; do
    echo "VMTEST pci $(sed 's/^0x//' "$d/vendor"):$(sed 's/^0x//' "$d/device")"
done
for b in /sys/block/*; do
    n=$(basename "$b")
    case "$n" in sd*|vd*|hd*) echo "VMTEST block $n" ;; esac
done
for n in /sys/class/net/*; do
    [ -e "$n/device/driver" ] || continue
    echo "VMTEST net $(basename "$n") $(basename "$(readlink "$n/device/driver")")"
done
# Test behaviours chosen on the kernel command line (tests/support/host.rs, `cmdline_extra`):
#   vmtest.on_virtio_boot=reboot  reset at once when a virtio disk holds partitions, i.e. the
#                                 boot disk (a partitioned fixture image; the test data disks
#                                 are blank) is on virtio: a boot loop after the conversion, as
#                                 Windows after 0x7B with AutoReboot=1
#   vmtest.on_virtio_boot=panic   a kernel panic instead (sysrq c; `panic=-1` resets at once)
on_virtio_boot=""
for w in $(cat /proc/cmdline); do
    case "$w" in vmtest.on_virtio_boot=*) on_virtio_boot=${w#vmtest.on_virtio_boot=} ;; esac
done
if [ -n "$on_virtio_boot" ] && ls -d /sys/block/vd*/vd*[0-9] >/dev/null 2>&1; then
    echo "VMTEST virtio-boot $on_virtio_boot"
    case "$on_virtio_boot" in
        reboot) reboot -f ;;
        panic) echo c > /proc/sysrq-trigger ;;
    esac
fi
# vmtest.agent=N: a minimal QEMU guest agent (tests/support/host.rs, `cmdline_extra`) on the
# org.qemu.guest_agent.0 port: it answers libvirt's guest-sync (echoing the id) and guest-ping,
# powers off on guest-shutdown, and answers an error to anything else; after N seconds (N > 0) it stops answering, as a guest that
# hangs after booting.
agent=""
for w in $(cat /proc/cmdline); do
    case "$w" in vmtest.agent=*) agent=${w#vmtest.agent=} ;; esac
done
if [ -n "$agent" ]; then
    port=""
    for p in /sys/class/virtio-ports/*; do
        [ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && port=/dev/$(basename "$p")
    done
    if [ -n "$port" ] && [ -e "$port" ]; then
        (
            # The port reads as end-of-file while the host side is not connected: wait and
            # read again, keeping the port open (as qemu-ga does).
            exec 3<>"$port"
            while true; do
                while IFS= read -r line <&3; do
                    case "$line" in
                        *guest-sync*)
                            id=$(echo "$line" | sed -n 's/.*"id"[^0-9]*\([0-9][0-9]*\).*/\1/p')
                            echo "{\"return\": $id}" >&3 ;;
                        *guest-ping*) echo '{"return": {}}' >&3 ;;
                        # qemu-ga does not answer a shutdown that works: the guest goes away.
                        *guest-shutdown*) poweroff -f ;;
                        *) echo '{"error": {"class": "CommandNotFound", "desc": "test agent"}}' >&3 ;;
                    esac
                done
                sleep 0.2
            done
        ) &
        agent_pid=$!
        echo "VMTEST agent $port"
        if [ "$agent" != 0 ]; then
            (sleep "$agent"; kill "$agent_pid"; echo "VMTEST agent-stopped") &
        fi
    else
        echo "VMTEST agent-no-port"
    fi
fi
# acpid in the foreground, logging to the console (its default log and pid files live in
# directories this initramfs does not have). "ready" only once it holds the event devices.
mkdir -p /var/run /var/log
acpid -f -d -c /etc/acpi &
acpid_pid=$!
i=0
while [ "$i" -lt 50 ]; do
    ls -l "/proc/$acpid_pid/fd" 2>/dev/null | grep -q /dev/input/event && break
    sleep 0.1
    i=$((i + 1))
done
echo "VMTEST ready"
while true; do sleep 3600; done
SH
chmod 755 "$root/init"

mkdir -p "$out"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$work/initrd.img"
cp "$vmlinuz" "$work/vmlinuz"
mv "$work/initrd.img" "$out/initrd.img"
mv "$work/vmlinuz" "$out/vmlinuz"
printf '%s\n%s\n%s\n' "$script_sum" "$pkg" "$(tr '\n' ' ' < "$order")" > "$out/stamp"
log "built $out (kernel $kver; modules: $(tr '\n' ' ' < "$order"))"
