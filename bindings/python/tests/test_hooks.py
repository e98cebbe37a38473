"""Hooks in Python: rewrite a header, short-circuit, choose an endpoint,
edit the response, read the log; errors; the GIL is not held while waiting."""

import threading

import pytest

import sluice
from conftest import get
from test_config_objects import reviews_config


def test_on_request_rewrites_a_header_and_short_circuits(sluice_gateway, fake_upstream):
    v1, v2 = fake_upstream(body="v1"), fake_upstream(body="v2")

    def on_request(ctx):
        if ctx.path == "/blocked":
            return sluice.Response(status=403, body="blocked by python", headers={"x-by": "hook"})
        ctx.headers["end-user"] = "jason"  # routed as jason
        ctx.headers.add("x-added", "1")
        del ctx.headers["x-secret"]
        return None

    gw = sluice_gateway(config=reviews_config(v1.port, v2.port), on_request=on_request)
    status, headers, body = get(gw.url("http") + "/r", {"x-secret": "s"})
    assert (status, body) == (200, b"v2")
    seen = v2.requests[-1].headers
    assert seen["end-user"] == "jason" and seen["x-added"] == "1" and "x-secret" not in seen
    status, headers, body = get(gw.url("http") + "/blocked")
    assert (status, body, headers["x-by"]) == (403, b"blocked by python", "hook")
    assert len(v1.requests) + len(v2.requests) == 1


def test_upstream_chosen_response_headers_and_log(sluice_gateway, fake_upstream):
    v1, v2 = fake_upstream(body="v1"), fake_upstream(body="v2")
    logged = []

    def on_upstream_chosen(ctx):
        assert ctx.upstream == "reviews"
        if "force-v2" in ctx.headers:
            assert ctx.use_endpoint(f"127.0.0.1:{v2.port}")
            assert not ctx.use_endpoint("10.0.0.1:1")
        if "refuse" in ctx.headers:
            return sluice.Response(status=429, body=b"no")
        return None

    def on_response_headers(ctx):
        ctx.response_headers["x-route"] = ctx.route
        with pytest.raises(ValueError):
            ctx.headers["x"] = "y"  # the request is fixed by now

    def on_log(ctx):
        logged.append((ctx.method, ctx.path, ctx.response_status, ctx.route, ctx.endpoint, ctx.response_flags))

    gw = sluice_gateway(config=reviews_config(v1.port, v2.port), on_upstream_chosen=on_upstream_chosen,
                        on_response_headers=on_response_headers, on_log=on_log)
    url = gw.url("http")
    status, headers, body = get(url + "/a", {"force-v2": "1"})
    assert (status, body, headers["x-route"]) == (200, b"v2", "everyone")
    assert get(url + "/b", {"refuse": "1"})[0] == 429
    gw.stop()  # on_log has run for every request once stop returns
    assert logged[0] == ("GET", "/a", 200, "everyone", f"127.0.0.1:{v2.port}", "-")
    assert logged[1][2] == 429


def test_a_context_kept_after_its_hook_refuses_use(sluice_gateway, fake_upstream):
    kept = []
    gw = sluice_gateway(config=reviews_config(1, 1), on_request=lambda ctx: kept.append(ctx))
    get(gw.url("http") + "/teapot")
    with pytest.raises(ValueError, match="only during"):
        kept[0].method


def test_a_raising_hook_answers_500_and_is_reported():
    def on_request(ctx):
        raise RuntimeError("boom")

    with sluice.Gateway(config=reviews_config(1, 1), on_request=on_request) as gw:
        status, _, body = get(gw.url("http") + "/teapot")
        assert status == 500
        assert any("boom" in e for e in gw.hook_errors)


def test_the_gil_is_released_while_python_waits(sluice_gateway, fake_upstream):
    # The hook runs on a gateway thread while this thread waits in stop():
    # with the GIL held by the waiter, it would deadlock.
    entered = threading.Event()
    release = threading.Event()

    def on_request(ctx):
        entered.set()
        release.wait(10)
        return sluice.Response(status=204)

    gw = sluice_gateway(config=reviews_config(1, 1), on_request=on_request)
    result = []
    t = threading.Thread(target=lambda: result.append(get(gw.url("http") + "/x")[0]))
    t.start()
    assert entered.wait(10)
    assert gw.explain("GET", "http://x/teapot")["route"] == "teapot"  # the gateway answers meanwhile
    release.set()
    t.join(10)
    assert result == [204]
