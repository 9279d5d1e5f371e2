"""A ProxyCommand for tests: carries stdin/stdout to HOST:PORT over TCP (like `nc` or
`ssh -W`), and appends a line to LOG each time it is used, so a test can prove the
connection went through it. Usage: python3 stdio_proxy.py HOST PORT LOG"""

from __future__ import annotations

import os
import socket
import sys
import threading


def main() -> int:
    host, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {host}:{port}\n")
    sock = socket.create_connection((host, port), timeout=10)
    sock.settimeout(None)

    def upstream() -> None:
        while data := os.read(0, 65536):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    threading.Thread(target=upstream, daemon=True).start()
    while data := sock.recv(65536):
        os.write(1, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
