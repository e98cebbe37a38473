"""Gateway(config=GatewayConfig(...)): the Python mirror of the C++ config
gives the same gateway as YAML; errors name the field; the manual clock."""

import pytest

import sluice
from sluice import (Destination, DirectResponse, Endpoint, GatewayConfig, Listener, Matcher, OutlierDetection,
                    Route, Router, StringMatch, HeaderMatch, Subset, Upstream, VirtualHost)
from conftest import get


def reviews_config(v1_port, v2_port):
    jason = Route(name="jason",
                  matches=[Matcher(headers=[HeaderMatch("end-user", StringMatch.exact("jason"))])],
                  destinations=[Destination("reviews", subset="v2")])
    everyone = Route(name="everyone", destinations=[Destination("reviews", subset="v1")])
    teapot = Route(name="teapot", matches=[Matcher(uri=StringMatch.exact("/teapot"))],
                   direct_response=DirectResponse(418, "short and stout"))
    return GatewayConfig(
        listeners=[Listener("http", router="main")],
        routers=[Router("main", [VirtualHost("reviews", ["*"], [teapot, jason, everyone])])],
        upstreams=[Upstream("reviews",
                            endpoints=[Endpoint("127.0.0.1", v1_port, {"version": "v1"}),
                                       Endpoint("127.0.0.1", v2_port, {"version": "v2"})],
                            subsets=[Subset("v1", {"version": "v1"}), Subset("v2", {"version": "v2"})])])


def test_objects_route_like_yaml(sluice_gateway, fake_upstream):
    v1, v2 = fake_upstream(body="v1"), fake_upstream(body="v2")
    gw = sluice_gateway(config=reviews_config(v1.port, v2.port))
    url = gw.url("http")
    assert get(url + "/r", {"end-user": "jason"})[2] == b"v2"
    assert get(url + "/r")[2] == b"v1"
    assert get(url + "/teapot")[:1] == (418,)
    why = gw.explain("GET", "http://any.example.com/r", {"end-user": "jason"})
    assert why["route"] == "jason" and why["destination"] == {"upstream": "reviews", "subset": "v2", "weight": 1}
    assert [r["route"] for r in why["reasons"]] == ["teapot"]
    assert gw.explain("GET", "http://x/teapot")["direct_response"]["status"] == 418


def test_object_errors_name_the_field(fake_upstream):
    config = reviews_config(1, 2)
    config.routers[0].virtual_hosts[0].routes[1].matches[0].uri = StringMatch.regex("(")
    with pytest.raises(sluice.ConfigError) as err:
        sluice.Gateway(config=config)
    assert err.value.object == "Router main"
    assert err.value.field == "virtual_hosts[0].routes[1].matches[0].uri"
    with pytest.raises(ValueError, match="load_balancer"):
        sluice.Gateway(config=GatewayConfig(upstreams=[Upstream("u", load_balancer="fastest")]))


def test_a_declared_port_is_used_and_found(fake_upstream):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    free = s.getsockname()[1]
    s.close()
    config = reviews_config(1, 2)
    config.listeners[0].port = free
    with sluice.Gateway(config=config) as gw:
        assert gw.port(free) == free and gw.port("http") == free


def test_manual_clock_ends_an_ejection(fake_upstream):
    good, bad = fake_upstream(body="good"), fake_upstream(status=500, name="bad")
    clock = sluice.ManualClock()
    config = GatewayConfig(
        listeners=[Listener("http", router="main")],
        routers=[Router("main", [VirtualHost("all", ["*"], [Route(destinations=[Destination("svc")])])])],
        upstreams=[Upstream("svc", load_balancer="round_robin",
                            endpoints=[Endpoint("127.0.0.1", good.port), Endpoint("127.0.0.1", bad.port)],
                            outlier_detection=OutlierDetection(consecutive_5xx=1, interval=1.0,
                                                               base_ejection_time=30.0,
                                                               max_ejection_percent=100))])
    with sluice.Gateway(config=config, clock=clock, seed=1) as gw:
        url = gw.url("http")
        for _ in range(4):
            get(url + "/")
        ejected = {e["address"]: e["ejected"] for e in gw.upstream("svc")["endpoints"]}
        assert ejected == {f"127.0.0.1:{good.port}": False, f"127.0.0.1:{bad.port}": True}
        clock.advance(10)
        assert gw.upstream("svc")["endpoints"][1]["ejected"] is True
        clock.advance(25)
        assert clock.elapsed == pytest.approx(35)
        assert gw.upstream("svc")["endpoints"][1]["ejected"] is False
        with pytest.raises(ValueError):
            clock.advance(-1)
