"""clock=: a ManualClock, or any object with now() (seconds, a timedelta or
a datetime), drives route timeouts, outlier ejection and rate-limit refills
without sleeping."""

import datetime
import threading
import time

import pytest

import sluice
from sluice import (Destination, Endpoint, FractionalPercent, GatewayConfig, LocalRateLimit, Listener,
                    OutlierDetection, RateLimitConfig, Route, Router, TokenBucket, Upstream, VirtualHost)
from conftest import get


def one_route(upstream, route=None, **config):
    route = route or Route(name="all", destinations=[Destination("svc")])
    return GatewayConfig(listeners=[Listener("http", router="main")],
                         routers=[Router("main", [VirtualHost("all", ["*"], [route])])],
                         upstreams=[upstream], **config)


def wait_for(predicate, what):
    """Waits for an event (not for time to pass): bounded, 10 s."""
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def timed_out_request(gw, upstream, advance):
    """A request to a route with a 1 s timeout whose upstream takes 30 s:
    only `advance` (moving the gateway's clock by 2 s) can end it."""
    result = []
    t = threading.Thread(target=lambda: result.append(get(gw.url("http") + "/slow")))
    t.start()
    wait_for(lambda: upstream.requests, "the request to reach the upstream")
    assert result == []
    advance(2.0)
    t.join(10)
    return result[0]


def slow_config(upstream):
    route = Route(name="slow", destinations=[Destination("svc")], timeout=1.0)
    return one_route(Upstream("svc", endpoints=[Endpoint("127.0.0.1", upstream.port)]), route)


def test_manual_clock_times_a_request_out(sluice_gateway, fake_upstream):
    up = fake_upstream(latency=30.0, name="slow")
    clock = sluice.ManualClock()
    gw = sluice_gateway(config=slow_config(up), clock=clock)
    status, headers, _ = timed_out_request(gw, up, clock.advance)
    assert status == 504
    assert clock.now() == pytest.approx(2.0) == clock.elapsed


class StepClock:
    """A clock of the test's own: now() returns a timedelta."""

    def __init__(self):
        self.t = datetime.timedelta()

    def now(self):
        return self.t


def test_any_object_with_now_is_a_clock(sluice_gateway, fake_upstream):
    up = fake_upstream(latency=30.0, name="slow")
    clock = StepClock()
    gw = sluice_gateway(config=slow_config(up), clock=clock)

    def advance(seconds):
        clock.t += datetime.timedelta(seconds=seconds)
        gw.clock_advanced()  # what ManualClock.advance does itself

    assert timed_out_request(gw, up, advance)[0] == 504


def test_seconds_and_datetimes_are_clocks_and_other_values_are_not(fake_upstream):
    up = fake_upstream()

    class Seconds:
        def now(self):
            return 1000.5

    class Wall:
        def now(self):
            return datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)

    for clock in (Seconds(), Wall()):
        with sluice.Gateway(config=slow_config(up), clock=clock) as gw:
            assert get(gw.url("http") + "/")[0] == 200

    class Text:
        def now(self):
            return "noon"

    with pytest.raises(TypeError, match="timedelta"):
        sluice.Gateway(config=slow_config(up), clock=Text())
    with pytest.raises(TypeError, match="now"):
        sluice.Gateway(config=slow_config(up), clock=object())


def test_outlier_ejection_ends_when_a_clock_object_moves(sluice_gateway, fake_upstream):
    good, bad = fake_upstream(body="good"), fake_upstream(status=500, name="bad")
    clock = StepClock()
    upstream = Upstream("svc", load_balancer="round_robin",
                        endpoints=[Endpoint("127.0.0.1", good.port), Endpoint("127.0.0.1", bad.port)],
                        outlier_detection=OutlierDetection(consecutive_5xx=1, interval=1.0,
                                                           base_ejection_time=30.0, max_ejection_percent=100))
    gw = sluice_gateway(config=one_route(upstream), clock=clock)
    for _ in range(4):
        get(gw.url("http") + "/")
    assert gw.upstream("svc")["endpoints"][1]["ejected"] is True
    clock.t += datetime.timedelta(seconds=35)
    gw.clock_advanced()
    assert gw.upstream("svc")["endpoints"][1]["ejected"] is False


def test_local_rate_limit_refills_when_the_clock_moves(sluice_gateway, fake_upstream):
    up = fake_upstream(body="ok")
    clock = sluice.ManualClock()
    limit = LocalRateLimit(stat_prefix="http_local_rate_limiter",
                           token_bucket=TokenBucket(max_tokens=2, tokens_per_fill=2, fill_interval=60.0),
                           filter_enabled=FractionalPercent(100), filter_enforced=FractionalPercent(100))
    config = one_route(Upstream("svc", endpoints=[Endpoint("127.0.0.1", up.port)]),
                       rate_limits=RateLimitConfig(local=limit))
    gw = sluice_gateway(config=config, clock=clock)
    url = gw.url("http") + "/"
    assert [get(url)[0] for _ in range(3)] == [200, 200, 429]
    clock.advance(60)
    assert [get(url)[0] for _ in range(3)] == [200, 200, 429]


def test_a_clock_that_raises_reads_as_its_last_value_and_is_reported(fake_upstream):
    up = fake_upstream(body="ok")

    class Flaky:
        calls = 0

        def now(self):
            Flaky.calls += 1
            if Flaky.calls > 1:
                raise RuntimeError("clock broke")
            return 5.0

    with sluice.Gateway(config=slow_config(up), clock=Flaky()) as gw:
        assert get(gw.url("http") + "/")[:3:2] == (200, b"ok")
        assert any("clock broke" in e for e in gw.hook_errors)
