#!/bin/sh
# Rebuild the image seeds of the fuzz targets (run as root: the NTFS volume is filled through an
# ntfs-3g FUSE mount). Needs qemu-img, qemu-io (qemu-utils), sfdisk (fdisk), mkntfs and ntfs-3g
# (ntfs-3g), python3 and gzip.
#   qcow2/*          small qcow2 images: v2/v3, 512-byte and 16 KiB clusters, zlib and zstd
#                    compressed clusters, zero clusters, extended L2, a backing file named
#                    backing.raw (the name the qcow2 target's fixed backing file has)
#   partitions/*     small raw disks: MBR with an extended chain, GPT, a bare NTFS boot sector
#   ntfs.img.gz      a 2 MiB NTFS volume holding Windows/System32/config/SYSTEM (the dirty seed
#                    hive) with its SYSTEM.LOG1, SOFTWARE (the clean seed hive), a driver file and
#                    a hibernation file: the base the ntfs target lays its input over
#   ntfs-head.img    its first 88 KiB (boot sector and $MFT): the ntfs target's seed
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
mnt=$work/mnt
cleanup() { umount "$mnt" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
mkdir -p qcow2 partitions "$mnt" "$here/../corpus/qcow2" "$here/../corpus/partitions" "$here/../corpus/ntfs"

# ---- qcow2 ----
write() { qemu-io -f qcow2 -c "$2" "$1" >/dev/null; }
qemu-img create -q -f qcow2 -o cluster_size=512 qcow2/v3-512.qcow2 64K
write qcow2/v3-512.qcow2 "write -P 0x5a 0 1536"
write qcow2/v3-512.qcow2 "write -z 2048 1024"
qemu-img create -q -f qcow2 -o cluster_size=512,compat=0.10 qcow2/v2-512.qcow2 32K
write qcow2/v2-512.qcow2 "write -P 0x11 512 1024"
python3 -c "import sys; sys.stdout.buffer.write(bytes(i % 251 for i in range(65536)))" > qcow2/backing.raw
qemu-img create -q -f qcow2 -o cluster_size=512 -b backing.raw -F raw qcow2/overlay.qcow2 64K
write qcow2/overlay.qcow2 "write -P 0x22 4096 512"
qemu-img create -q -f raw plain.raw 16K
python3 -c "import sys; sys.stdout.buffer.write(b'compressible ' * 1260)" | dd of=plain.raw conv=notrunc status=none
qemu-img convert -q -c -f raw -O qcow2 -o cluster_size=512 plain.raw qcow2/zlib.qcow2
qemu-img convert -q -c -f raw -O qcow2 -o cluster_size=512,compression_type=zstd plain.raw qcow2/zstd.qcow2
qemu-img create -q -f qcow2 -o cluster_size=16K,extended_l2=on -b backing.raw -F raw qcow2/extl2.qcow2 64K
write qcow2/extl2.qcow2 "write -P 0x33 1024 1024"
write qcow2/extl2.qcow2 "write -z 4096 512"

# ---- partitions ----
truncate -s 48K partitions/gpt.img
printf 'label: gpt\nlabel-id: 11111111-2222-3333-4444-555555555555\nfirst-lba: 34\nstart=34, size=20, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, uuid=21111111-2222-3333-4444-555555555555, name="basic"\nstart=54, size=8, type=E3C9E316-0B5C-4DB8-817D-F92DF00215AE, uuid=31111111-2222-3333-4444-555555555555\n' \
    | sfdisk -q partitions/gpt.img
printf 'NTFS    ' | dd of=partitions/gpt.img bs=1 seek=$((34 * 512 + 3)) conv=notrunc status=none
truncate -s 40K partitions/mbr.img
printf 'label: dos\nlabel-id: 0x12345678\nstart=1, size=20, type=7, bootable\nstart=21, size=50, type=5\nstart=23, size=10, type=7\nstart=35, size=10, type=83\nstart=71, size=8, type=42\n' \
    | sfdisk -q partitions/mbr.img

# ---- NTFS ----
truncate -s 2M ntfs.img
mkntfs -F -f -q -s 512 -c 512 -p 0 -H 0 -S 0 -L fuzz ntfs.img
ntfs-3g ntfs.img "$mnt"
mkdir -p "$mnt/Windows/System32/config" "$mnt/Windows/System32/drivers"
cp "$here/system-dirty.hive" "$mnt/Windows/System32/config/SYSTEM"
cp "$here/system-dirty.hive.LOG1" "$mnt/Windows/System32/config/SYSTEM.LOG1"
cp "$here/system.hive" "$mnt/Windows/System32/config/SOFTWARE"
printf 'MZ stand-in driver' > "$mnt/Windows/System32/drivers/viostor.sys"
printf 'hibr' > "$mnt/hiberfil.sys"
umount "$mnt"
head -c 512 ntfs.img > partitions/bare-ntfs-boot.img
head -c $((0x16000)) ntfs.img > ntfs-head.img

rm qcow2/backing.raw
rm -rf "$here/qcow2" "$here/partitions"
cp -r qcow2 partitions ntfs-head.img "$here/"
gzip -9n < ntfs.img > "$here/ntfs.img.gz"
ls -lR "$here"
