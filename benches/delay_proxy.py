#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that delays every chunk it forwards, to measure remote scans with a
round trip like a LAN's or a WAN's (benches/remote.md says how it was used).

    delay_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS

Each chunk is held DELAY_MS before it is passed on, in both directions, so one request/answer
exchange costs about 2 x DELAY_MS more. Loopback only; stops with Ctrl-C.
"""
import socket
import sys
import threading
import time


def pump(src, dst, delay):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            time.sleep(delay)
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main():
    listen_port, target_port, delay_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", listen_port))
    server.listen(16)
    while True:
        client, _ = server.accept()
        upstream = socket.create_connection(("127.0.0.1", target_port))
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pump, args=(a, b, delay_ms / 1000), daemon=True).start()


if __name__ == "__main__":
    main()
