"""The protected demo service: UDP on 0.0.0.0:7000, answers ``HOSTNAME PAYLOAD``.

Run inside a node by ``mqlab-demo.service`` (Type=notify: it reports READY=1 to
systemd once the socket is bound, so ``systemctl start`` returns only when it
answers). It writes nothing else.
"""

from __future__ import annotations

import argparse
import os
import socket


def sd_notify(message: str) -> None:
    """Tell systemd (if it is our manager) about our state; no-op otherwise."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    addr = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(addr)
        sock.sendall(message.encode())


def serve(port: int, host: str = "0.0.0.0") -> None:
    name = socket.gethostname().encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sd_notify("READY=1")
        while True:
            data, peer = sock.recvfrom(2048)
            sock.sendto(name + b" " + data, peer)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=7000)
    parser.add_argument("--host", default="0.0.0.0")
    args = parser.parse_args(argv)
    serve(args.port, args.host)


if __name__ == "__main__":
    main()
