"""Cost per request of a Python hook (issue 15).

One worker serves a direct response; wrk drives it with and without hooks.
The extra cost per request is 1/rps(with hook) - 1/rps(without). Run from a
build configured with -DSLUICE_PYTHON=ON:

    PYTHONPATH=build/bindings/python python3 benchmarks/python_hook.py [seconds]
"""

import re
import subprocess
import sys

import sluice
from sluice import DirectResponse, GatewayConfig, Listener, Route, Router, VirtualHost

SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
CONFIG = GatewayConfig(
    listeners=[Listener("http", router="main")],
    routers=[Router("main", [VirtualHost("all", ["*"], [Route(name="ok", direct_response=DirectResponse(200, "ok"))])])])


def rps(**hooks):
    with sluice.Gateway(config=CONFIG, workers=1, **hooks) as gw:
        out = subprocess.run(["wrk", "-t1", "-c8", f"-d{SECONDS}s", gw.url("http") + "/"],
                             capture_output=True, text=True, check=True).stdout
        return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def noop(ctx):
    return None


def edit(ctx):
    ctx.headers["x-user"] = ctx.headers.get("user-agent", "")
    return None


def log(ctx):
    _ = (ctx.response_status, ctx.route)


base = rps()
print(f"no hook:                      {base:10.0f} req/s")
for name, hooks in [("on_request no-op", {"on_request": noop}),
                    ("on_request edits a header", {"on_request": edit}),
                    ("on_request + on_log", {"on_request": edit, "on_log": log})]:
    r = rps(**hooks)
    print(f"{name + ':':30s}{r:10.0f} req/s  +{(1 / r - 1 / base) * 1e6:6.1f} us/request")
