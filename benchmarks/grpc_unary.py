#!/usr/bin/env python3
"""gRPC unary latency for benchmarks/run.sh (python3-grpcio, no protoc).

    grpc_unary.py serve PORT         an h2c gRPC server on 127.0.0.1:PORT:
                                     /bench.Echo/Call returns the request bytes
    grpc_unary.py frame              the message, length-prefixed, on stdout
                                     (run.sh's gRPC origin and h2load -d)
    grpc_unary.py call PORT N [W]    W warm-up calls (default 0), then N
                                     unary calls, one outstanding at a time,
                                     over one channel to 127.0.0.1:PORT

`call` prints what run.sh's parse_wrk prints: "calls/s p50_us p99_us calls
errors" (the latency of each call as the client sees it: client, proxy and
server together). Exits non-zero if a warm-up call fails.
"""
import sys
import time
from concurrent import futures

METHOD = "/bench.Echo/Call"
MESSAGE = b"\x0a\x05hello"  # a protobuf-shaped 7-byte message (field 1 = "hello")


def serve(port):
    import grpc  # here, so that `frame` runs on a python3 without grpcio

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Call": grpc.unary_unary_rpc_method_handler(lambda req, _ctx: req)})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


def call(port, n, warmup):
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        rpc = channel.unary_unary(METHOD)
        for _ in range(warmup):
            if rpc(MESSAGE, timeout=10) != MESSAGE:
                sys.exit("grpc_unary.py: wrong reply in the warm-up")
        times, errors = [], 0
        start = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            try:
                ok = rpc(MESSAGE, timeout=10) == MESSAGE
            except grpc.RpcError:
                ok = False
            times.append(time.perf_counter() - t0)
            errors += not ok
        elapsed = time.perf_counter() - start
    times.sort()
    pct = lambda p: times[min(len(times) - 1, int(len(times) * p))] * 1e6
    print(f"{n / elapsed:.2f} {pct(0.50):.0f} {pct(0.99):.0f} {n} {errors}")


def main():
    mode = sys.argv[1]
    if mode == "frame":
        sys.stdout.buffer.write(b"\0" + len(MESSAGE).to_bytes(4, "big") + MESSAGE)
        return
    port = int(sys.argv[2])
    if mode == "serve":
        serve(port)
    else:
        call(port, int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 0)


if __name__ == "__main__":
    main()
