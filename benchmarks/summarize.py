#!/usr/bin/env python3
"""Markdown summary of benchmarks/run.sh raw rows (TSV on argv[1]).

Per body case and row: median (min-max) over rounds of each figure, and each
proxy's ratio to nginx computed within the same round, then summarised the
same way, so drift between rounds does not leak into the ratios.
"""
import csv
import statistics
import sys
from collections import defaultdict

ROW_ORDER = ["direct", "nginx", "haproxy", "sluice"]
CASE_TITLES = {
    "tls-handshake": "TLS, new connection + full handshake per request (req/s = handshakes/s)",
    "tls-resume": "TLS, new connection per request, session resumed from the ticket",
    "tls-keepalive": "TLS, keep-alive",
    "h2": "HTTP/2 (h2c) to the proxy, HTTP/1.1 to the origin: h2load, several streams per connection",
    "h2-1stream": "HTTP/2 (h2c) to the proxy, HTTP/1.1 to the origin: h2load, one stream per connection",
    "grpc": "gRPC-shaped POSTs, h2c on both sides: h2load, several streams per connection",
    "grpc-unary": "gRPC unary calls one at a time, python3-grpcio on both ends (req/s = calls/s)",
}


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def spread(values, fmt):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    by = defaultdict(list)  # (case, row) -> records
    per_round = defaultdict(dict)  # (case, round) -> row -> record
    for r in rows:
        by[(r["case"], r["row"])].append(r)
        per_round[(r["case"], r["round"])][r["row"]] = r
    cases = list(dict.fromkeys(r["case"] for r in rows))
    present = [x for x in ROW_ORDER if any(r["row"] == x for r in rows)]

    for case in cases:
        print(f"## {CASE_TITLES.get(case, 'Body: ' + case)}\n")
        print("| row | req/s | p50 (us) | p99 (us) | proxy CPU us/req | peak RSS (KiB) "
              "| idle conn (B/conn) | errors |")
        print("|---|---|---|---|---|---|---|---|")
        for row in present:
            recs = by.get((case, row), [])
            if not recs:
                continue
            col = lambda k: [num(r[k]) for r in recs]
            idle = col("idle_bytes_per_conn")
            print(f"| {row} | {spread(col('rps'), '{:.0f}')} | {spread(col('p50_us'), '{:.0f}')} "
                  f"| {spread(col('p99_us'), '{:.0f}')} | {spread(col('cpu_us_per_req'), '{:.2f}')} "
                  f"| {spread(col('peak_rss_kb'), '{:.0f}')} | {spread(idle, '{:.0f}')} "
                  f"| {sum(int(num(r['errors']) or 0) for r in recs)} |")
        print()
        if "nginx" not in present:
            continue
        print("Ratios to nginx in the same round, median (min-max):\n")
        print("| row | req/s | p99 | CPU us/req | idle conn bytes |")
        print("|---|---|---|---|---|")
        for row in present:
            if row in ("nginx", "direct"):
                continue
            ratios = defaultdict(list)
            for (c, _rnd), rec in per_round.items():
                if c != case or row not in rec or "nginx" not in rec:
                    continue
                a, b = rec[row], rec["nginx"]
                for key in ("rps", "p99_us", "cpu_us_per_req", "idle_bytes_per_conn"):
                    x, y = num(a[key]), num(b[key])
                    if x is not None and y:
                        ratios[key].append(x / y)
            print(f"| {row} | {spread(ratios['rps'], '{:.2f}x')} | {spread(ratios['p99_us'], '{:.2f}x')} "
                  f"| {spread(ratios['cpu_us_per_req'], '{:.2f}x')} "
                  f"| {spread(ratios['idle_bytes_per_conn'], '{:.2f}x')} |")
        print()
    busy = [num(r["foreign_cores_before"]) for r in rows]
    others = [num(r.get("others_on_proxy_cpu")) for r in rows]
    print(f"Other processes before each round used {spread(busy, '{:.2f}')} cores "
          "(sampled over 3 s); CPU time on the proxy's core not charged to the proxy "
          f"(other processes, softirq excluded) during the runs: {spread(others, '{:.2f}')} cores.")


if __name__ == "__main__":
    main(sys.argv[1])
