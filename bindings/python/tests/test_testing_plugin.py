"""The sluice.testing fixtures themselves."""

import time

from conftest import get


def test_fake_upstream_records_and_answers(fake_upstream):
    up = fake_upstream(status=201, body="made", headers={"x-kind": "fake"}, name="maker")
    up.route("/slow", status=200, body="late", latency=0.05)
    status, headers, body = get(f"http://127.0.0.1:{up.port}/x?q=1", {"x-test": "yes"})
    assert (status, body, headers["x-kind"], headers["x-upstream"]) == (201, b"made", "fake", "maker")
    t0 = time.monotonic()
    assert get(f"http://127.0.0.1:{up.port}/slow")[2] == b"late"
    assert time.monotonic() - t0 >= 0.05
    assert [(r.method, r.path) for r in up.requests] == [("GET", "/x?q=1"), ("GET", "/slow")]
    assert up.requests[0].headers["x-test"] == "yes"
    up.clear()
    assert up.requests == []


def test_sluice_gateway_factory_closes_after_the_test(sluice_gateway):
    from test_config_objects import reviews_config
    gw = sluice_gateway(config=reviews_config(1, 1))
    assert get(gw.url("http") + "/teapot")[0] == 418


def test_the_previous_gateway_was_closed(request):
    import sluice
    # The previous test's gateway is closed by its fixture.
    assert sluice._sluice._live_gateways() == 0
