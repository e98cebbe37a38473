#!/usr/bin/env python3
"""Sends a fixed request sequence for benchmarks/instructions.sh.

    request_client.py PORT REQUESTS CONNECTIONS ['Name: value' ...]

GET /small with keep-alive, one request outstanding at a time, taking the
connections in turn, so every proxy sees the same sequence whatever its
speed. Headers given after CONNECTIONS are added to every request (a JWT,
a header an authorization rule reads: security_cost.sh). Exits non-zero
unless every response is a 200.
"""
import socket
import sys

REQUEST_HEAD = b"GET /small HTTP/1.1\r\nHost: origin.bench.local\r\nUser-Agent: instr\r\n"


def read_response(sock, buf):
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed before a response head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("connection closed inside a body")
        rest += chunk
    return status, rest[length:]


def main():
    port, total, conns = (int(a) for a in sys.argv[1:4])
    request = REQUEST_HEAD + b"".join(h.encode() + b"\r\n" for h in sys.argv[4:]) + b"\r\n"
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
    for s in socks:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    bufs = [b""] * conns
    for i in range(total):
        k = i % conns
        socks[k].sendall(request)
        status, bufs[k] = read_response(socks[k], bufs[k])
        if status != 200:
            sys.exit(f"request {i}: status {status}")
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
