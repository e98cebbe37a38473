#!/usr/bin/env python3
"""Opens COUNT keep-alive TLS connections to 127.0.0.1:PORT (no certificate
verification, the benchmark's self-signed certificate), sends one GET on each
and reads its whole response, then holds them all open (idle) for HOLD
seconds or until killed. Prints "ready <open>" once every connection has had
its response, as sluice_idle_conns does for plain connections.

    idle_tls_conns.py PORT COUNT HOLD_SECONDS [PATH]
"""
import resource
import socket
import ssl
import sys
import time


def read_response(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        return False
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return False
        body += chunk
    return True


def main():
    port, count, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    path = sys.argv[4] if len(sys.argv) > 4 else "/"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 64), hard))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    request = f"GET {path} HTTP/1.1\r\nHost: bench.local\r\n\r\n".encode()
    conns = []
    for _ in range(count):
        raw = socket.create_connection(("127.0.0.1", port))
        # As curl and browsers do: without it the request waits behind the
        # unacknowledged client Finished (Nagle) for a delayed ACK.
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = ctx.wrap_socket(raw, server_hostname="bench.local")
        conn.sendall(request)
        if not read_response(conn):
            print("error: no 200 response", file=sys.stderr)
            return 1
        conns.append(conn)
    print(f"ready {len(conns)}", flush=True)
    time.sleep(hold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
