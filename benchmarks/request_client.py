#!/usr/bin/env python3
"""Sends a fixed request sequence for benchmarks/instructions.sh.

    request_client.py [--tls WARMUP] PORT REQUESTS CONNECTIONS ['Name: value' ...]

GET /small with keep-alive, one request outstanding at a time, taking the
connections in turn, so every proxy sees the same sequence whatever its
speed. Headers given after CONNECTIONS are added to every request (a JWT,
a header an authorization rule reads: security_cost.sh). Exits non-zero
unless every response is a 200.

--tls WARMUP: over TLS 1.3 (no certificate check). The connections and
their handshakes come first, then WARMUP requests; then the client prints
"warm", waits for a line on stdin and sends REQUESTS on the same
connections, so that what is counted after that line is keep-alive TLS
requests only.
"""
import socket
import ssl
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


def send(socks, bufs, request, total):
    for i in range(total):
        k = i % len(socks)
        socks[k].sendall(request)
        status, bufs[k] = read_response(socks[k], bufs[k])
        if status != 200:
            sys.exit(f"request {i}: status {status}")


def main():
    args = sys.argv[1:]
    warmup = None
    if args[0] == "--tls":
        warmup = int(args[1])
        args = args[2:]
    port, total, conns = (int(a) for a in args[:3])
    request = REQUEST_HEAD + b"".join(h.encode() + b"\r\n" for h in args[3:]) + b"\r\n"
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
    for s in socks:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    bufs = [b""] * conns
    if warmup is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        socks = [ctx.wrap_socket(s, server_hostname="localhost") for s in socks]
        send(socks, bufs, request, warmup)
        print("warm", flush=True)
        sys.stdin.readline()
    send(socks, bufs, request, total)
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
