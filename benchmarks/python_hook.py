"""Cost per request of a Python hook (issue 15).

One worker serves a direct response; wrk drives it with and without hooks.
Reported: requests/s, and the CPU time this process (the gateway's worker
and the hook) spent per request, which a busy machine disturbs less than
throughput; the hook's cost is the difference to "no hook". Run from a build
configured with -DSLUICE_PYTHON=ON:

    PYTHONPATH=build/bindings/python python3 benchmarks/python_hook.py [seconds]
"""

import re
import resource
import subprocess
import sys

import sluice
from sluice import DirectResponse, GatewayConfig, Listener, Route, Router, VirtualHost

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
CONFIG = GatewayConfig(
    listeners=[Listener("http", router="main")],
    routers=[Router("main", [VirtualHost("all", ["*"], [Route(name="ok", direct_response=DirectResponse(200, "ok"))])])])


def run(**hooks):
    """(requests/s, CPU microseconds per request) of one wrk run."""
    with sluice.Gateway(config=CONFIG, workers=1, **hooks) as gw:
        before = resource.getrusage(resource.RUSAGE_SELF)
        out = subprocess.run(["wrk", "-t1", "-c8", f"-d{SECONDS}s", gw.url("http") + "/"],
                             capture_output=True, text=True, check=True).stdout
        after = resource.getrusage(resource.RUSAGE_SELF)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), cpu / requests * 1e6


def noop(ctx):
    return None


def edit(ctx):
    ctx.headers["x-user"] = ctx.headers.get("user-agent", "")
    return None


def log(ctx):
    _ = (ctx.response_status, ctx.route)


base_rps, base_cpu = run()
print(f"{'no hook:':30s}{base_rps:10.0f} req/s {base_cpu:7.1f} us CPU/request")
for name, hooks in [("on_request no-op", {"on_request": noop}),
                    ("on_request edits a header", {"on_request": edit}),
                    ("on_request + on_log", {"on_request": edit, "on_log": log})]:
    r, cpu = run(**hooks)
    print(f"{name + ':':30s}{r:10.0f} req/s {cpu:7.1f} us CPU/request  (+{cpu - base_cpu:.1f})")
