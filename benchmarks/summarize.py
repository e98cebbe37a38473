#!/usr/bin/env python3
"""Markdown summary of benchmarks/run.sh raw rows (TSV on argv[1]; the workers
case's rows, a TSV of their own, on argv[2] when that case ran).

Per body case and row: median (min-max) over rounds of each figure, and each
proxy's ratio to nginx computed within the same round, then summarised the
same way, so drift between rounds does not leak into the ratios. The workers
case's scaling estimate is likewise computed within a round (a proxy's
2-worker run against its 1-worker run), then summarised.
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


def workers_table(path):
    """1 vs 2 workers per proxy: the estimated req/s scaling on 2 free cores.

    est = (CPU us/req with 1 worker / with 2) * min(2, sum of the workers' CPU
    / the busiest worker's CPU): the first factor is below 1 when a second
    worker makes each request dearer (contention), the second is 2 when both
    workers do the same work and 1 when one does it all.
    """
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        return
    by = defaultdict(list)  # (row, workers) -> records
    per_round = defaultdict(dict)  # (row, round) -> workers -> record
    for r in rows:
        by[(r["row"], r["workers"])].append(r)
        per_round[(r["row"], r["round"])][r["workers"]] = r
    present = [x for x in ROW_ORDER if any(r["row"] == x for r in rows)]
    workers = sorted({r["workers"] for r in rows}, key=int)

    def split_of(recs, key):
        """ "a/b" (most first) per round -> the median of each position over
        rounds, with the range of the first (the busiest worker's)."""
        parts = [[num(v) for v in r[key].split("/")] for r in recs if r[key] not in ("", "-")]
        if not parts:
            return "-"
        meds = [statistics.median(p[i] for p in parts if len(p) > i and p[i] is not None)
                for i in range(max(len(p) for p in parts))]
        text = "/".join(f"{v:.0f}" for v in meds)
        top = [p[0] for p in parts if p[0] is not None]
        if len(top) > 1:
            text += f" ({min(top):.0f}-{max(top):.0f})"
        return text

    print("## Workers: 1 vs 2 per proxy, /small (estimated req/s scaling on 2 free cores)\n")
    print("| row | workers | req/s | proxy CPU us/req | proxy cores | worker CPU shares (%) "
          "| conns per worker | CPU/req 1w / this | balance (sum/max) | est. scaling |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in present:
        for w in workers:
            recs = by.get((row, w), [])
            if not recs:
                continue
            col = lambda k: [num(r[k]) for r in recs]
            cost, balance, est = [], [], []
            for (rw, _rnd), rec in per_round.items():
                if rw != row or w not in rec or "1" not in rec or w == "1":
                    continue
                c1, cn = num(rec["1"]["cpu_us_per_req"]), num(rec[w]["cpu_us_per_req"])
                s, m = num(rec[w]["worker_ticks_sum"]), num(rec[w]["worker_ticks_max"])
                if not (c1 and cn and s and m):
                    continue
                cost.append(c1 / cn)
                balance.append(min(int(w), s / m))
                est.append(cost[-1] * balance[-1])
            print(f"| {row} | {w} | {spread(col('rps'), '{:.0f}')} "
                  f"| {spread(col('cpu_us_per_req'), '{:.2f}')} | {spread(col('proxy_cores'), '{:.2f}')} "
                  f"| {split_of(recs, 'worker_cpu_shares')} "
                  f"| {split_of(recs, 'conns_per_worker')} "
                  f"| {spread(cost, '{:.2f}')} | {spread(balance, '{:.2f}')} "
                  f"| {spread(est, '{:.2f}x')} |")
    print()
    others = [num(r["others_cores"]) for r in rows]
    print("est. scaling = (CPU/req with 1 worker / with 2) x min(2, balance), within each "
          "round: what 2 workers would reach over 1 given 2 cores of their own, "
          "if CPU per request stays as measured here and load splits as it did here. "
          "An estimate, not a measurement (that needs 2 cores for the proxy plus 1+ for load): "
          f"see benchmarks/README.md. Other processes during these runs: {spread(others, '{:.2f}')} cores.\n")


def main(path, workers_path=None):
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
    if workers_path:
        workers_table(workers_path)
    if not rows:
        return
    busy = [num(r["foreign_cores_before"]) for r in rows]
    others = [num(r.get("others_on_proxy_cpu")) for r in rows]
    print(f"Other processes before each round used {spread(busy, '{:.2f}')} cores "
          "(sampled over 3 s); CPU time on the proxy's core not charged to the proxy "
          f"(other processes, softirq excluded) during the runs: {spread(others, '{:.2f}')} cores.")


if __name__ == "__main__":
    main(*sys.argv[1:3])
