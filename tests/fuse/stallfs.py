#!/usr/bin/env python3
"""A FUSE file system whose reads never return: hung storage for the tests.

    stallfs.py MOUNTPOINT [SIZE]

Mounts at MOUNTPOINT (root needed: it calls mount(8) with /dev/fuse) a directory holding one
file, `disk.img`, of SIZE bytes (default 1 GiB). Looking it up, stat, open and close answer at
once; a READ request is never answered, so the reading thread waits in the kernel the way it
does on a hard-mounted NFS export whose server is gone. Prints "ready" once mounted, then serves
until killed (the kernel ends the connection and fails whatever still waits).

The FUSE wire protocol is spoken directly (linux/fuse.h, protocol 7.31) so that nothing beyond
Python and mount(8) is needed.
"""
import os
import struct
import subprocess
import sys

FUSE_LOOKUP, FUSE_FORGET, FUSE_GETATTR = 1, 2, 3
FUSE_OPEN, FUSE_READ, FUSE_RELEASE, FUSE_FLUSH = 14, 15, 18, 25
FUSE_INIT, FUSE_OPENDIR, FUSE_READDIR, FUSE_RELEASEDIR = 26, 27, 28, 29
FUSE_INTERRUPT, FUSE_DESTROY, FUSE_BATCH_FORGET = 36, 38, 42
ENOENT, ENOSYS = 2, 38

ROOT, FILE = 1, 2
IN_HEADER = struct.Struct("<IIQQIIIHH")  # len opcode unique nodeid uid gid pid extlen pad
OUT_HEADER = struct.Struct("<IiQ")  # len error unique


def attr(node, size):
    """struct fuse_attr (88 bytes)."""
    if node == ROOT:
        mode, nlink, size = 0o040555, 2, 0
    else:
        mode, nlink = 0o100444, 1
    return struct.pack(
        "<QQQQQQIIIIIIIIII",
        node, size, (size + 511) // 512, 0, 0, 0, 0, 0, 0,
        mode, nlink, 0, 0, 0, 4096, 0,
    )


def main():
    mountpoint = sys.argv[1]
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 1 << 30
    fd = os.open("/dev/fuse", os.O_RDWR)
    subprocess.run(
        [
            "mount", "-i", "-t", "fuse", "-o",
            f"fd={fd},rootmode=40000,user_id=0,group_id=0,allow_other",
            "stallfs", mountpoint,
        ],
        check=True,
        pass_fds=[fd],
    )
    print("ready", flush=True)

    def reply(unique, payload=b"", error=0):
        os.write(fd, OUT_HEADER.pack(OUT_HEADER.size + len(payload), -error, unique) + payload)

    while True:
        try:
            request = os.read(fd, (1 << 20) + 4096)
        except OSError:
            return  # unmounted
        if len(request) < IN_HEADER.size:
            return
        _, opcode, unique, node, *_ = IN_HEADER.unpack_from(request)
        body = request[IN_HEADER.size:]
        if opcode == FUSE_INIT:
            major, minor, readahead, _flags = struct.unpack_from("<IIII", body)
            reply(unique, struct.pack(
                "<IIIIHHIIHHII", 7, 31, readahead, 0, 16, 12, 1 << 17, 1, 0, 0, 0, 0,
            ).ljust(64, b"\0"))
        elif opcode == FUSE_LOOKUP:
            name = body.split(b"\0", 1)[0]
            if node == ROOT and name == b"disk.img":
                reply(unique, struct.pack("<QQQQII", FILE, 0, 1, 1, 0, 0) + attr(FILE, size))
            else:
                reply(unique, error=ENOENT)
        elif opcode == FUSE_GETATTR:
            reply(unique, struct.pack("<QII", 1, 0, 0) + attr(node, size))
        elif opcode in (FUSE_OPEN, FUSE_OPENDIR):
            reply(unique, struct.pack("<QII", 0, 0, 0))
        elif opcode == FUSE_READ:
            pass  # never answered: the reader waits for good
        elif opcode in (FUSE_RELEASE, FUSE_RELEASEDIR, FUSE_FLUSH, FUSE_DESTROY):
            reply(unique)
        elif opcode in (FUSE_FORGET, FUSE_BATCH_FORGET, FUSE_INTERRUPT):
            pass  # no reply expected (an interrupted read stays unanswered too)
        else:
            reply(unique, error=ENOSYS)


if __name__ == "__main__":
    main()
