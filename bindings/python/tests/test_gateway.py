"""sluice.Gateway from Istio YAML: ports, urls, explain, apply, upstream,
stats, stop, the context manager and errors."""

import socket
import threading
import time

import pytest

import sluice
from conftest import BOOKINFO, get


def test_version_is_the_library_version():
    assert sluice.__version__ == "0.1.0"


def test_bookinfo_jason_goes_to_v2_with_under_a_second_of_setup(sluice_gateway, fake_upstream, bookinfo_yaml):
    t0 = time.monotonic()
    v1 = fake_upstream(body="reviews-v1", name="v1")
    v2 = fake_upstream(body="reviews-v2", name="v2")
    gw = sluice_gateway(bookinfo_yaml(v1.port, v2.port))
    assert time.monotonic() - t0 < 1.0
    url = gw.url(8080)
    status, _, body = get(url + "/reviews/1", {"host": "bookinfo.example.com", "end-user": "jason"})
    assert (status, body) == (200, b"reviews-v2")
    status, _, body = get(url + "/reviews/1", {"host": "bookinfo.example.com"})
    assert (status, body) == (200, b"reviews-v1")
    assert [r.path for r in v2.requests] == ["/reviews/1"]
    assert v2.requests[0].headers["end-user"] == "jason"


def test_port_by_server_port_and_by_name():
    with sluice.Gateway(paths=[BOOKINFO]) as gw:
        assert gw.listeners == ["http.8080"]
        port = gw.port(8080)
        assert port not in (0, 8080)
        assert gw.port("http.8080") == port
        assert gw.port(str(port)) == port
        assert gw.url(8080) == f"http://127.0.0.1:{port}"
        with pytest.raises(KeyError):
            gw.port(9999)


def test_explain_names_route_reasons_and_destination():
    with sluice.Gateway(paths=[BOOKINFO]) as gw:
        why = gw.explain("GET", "http://bookinfo.example.com/reviews/1", headers={"end-user": "jason"})
        assert why["matched"] is True
        assert why["virtual_service"] == "reviews"
        assert why["destination"]["subset"] == "v2" and why["destination"]["weight"] == 100
        assert "reviews" in why["destination"]["upstream"]
        other = gw.explain("GET", "http://bookinfo.example.com:8080/reviews/1")
        assert other["destination"]["subset"] == "v1"
        assert [r["route"] for r in other["reasons"]] == ["default/bookinfo/http[0]", "default/reviews/http[0]"]
        assert "end-user" in other["reasons"][1]["reason"]
        nothing = gw.explain("GET", "http://elsewhere.example.com:8080/")
        assert nothing["matched"] is False and nothing["route"] is None
        with pytest.raises(ValueError):
            gw.explain("GET", "not-a-url")
        with pytest.raises(ValueError, match="port 1234"):
            gw.explain("GET", "http://bookinfo.example.com:1234/")


def test_config_error_names_object_and_field_and_changes_nothing(fake_upstream, bookinfo_yaml):
    up = fake_upstream(body="ok")
    with sluice.Gateway(bookinfo_yaml(up.port, up.port)) as gw:
        port = gw.port(8080)
        bad = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken}
spec:
  hosts: [bookinfo.example.com]
  gateways: [bookinfo-gateway]
  http:
  - match: [{uri: {regex: '('}}]
    route: [{destination: {host: reviews}}]
"""
        with pytest.raises(sluice.ConfigError) as err:
            gw.apply(yaml=bad)
        assert "VirtualService broken" in str(err.value)
        assert err.value.object.startswith("VirtualService broken")
        assert "http[0]" in err.value.field
        assert gw.port(8080) == port
        assert get(gw.url(8080) + "/reviews/1", {"host": "bookinfo.example.com"})[0] == 200
    with pytest.raises(sluice.ConfigError):
        sluice.Gateway("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspec: {http: 3}\n")
    with pytest.raises(ValueError):
        sluice.Gateway(yaml="", config=sluice.GatewayConfig())


def test_apply_replaces_the_configuration(fake_upstream, bookinfo_yaml):
    a = fake_upstream(body="a")
    b = fake_upstream(body="b")
    with sluice.Gateway(bookinfo_yaml(a.port, a.port)) as gw:
        url = gw.url(8080) + "/reviews/1"
        assert get(url, {"host": "bookinfo.example.com"})[2] == b"a"
        gw.apply(yaml=bookinfo_yaml(b.port, b.port))
        assert get(gw.url(8080) + "/reviews/1", {"host": "bookinfo.example.com"})[2] == b"b"


def test_upstream_state_and_unknown_upstream(sluice_gateway, fake_upstream, bookinfo_yaml):
    up = fake_upstream()
    gw = sluice_gateway(bookinfo_yaml(up.port, up.port))
    name = gw.explain("GET", "http://bookinfo.example.com/reviews/1")["destination"]["upstream"]
    state = gw.upstream(name)
    assert state["name"] == name
    assert {e["address"] for e in state["endpoints"]} == {f"127.0.0.1:{up.port}"}
    assert all(e["healthy"] and not e["ejected"] for e in state["endpoints"])
    assert state["active_requests"] == 0
    assert gw.upstream("reviews") == state  # the Istio host stands for its one port
    with pytest.raises(KeyError):
        gw.upstream("no-such-upstream")


def test_stats_shape(sluice_gateway, fake_upstream, bookinfo_yaml):
    up = fake_upstream()
    gw = sluice_gateway(bookinfo_yaml(up.port, up.port))
    get(gw.url(8080) + "/reviews/1", {"host": "bookinfo.example.com"})
    stats = gw.stats()
    assert set(stats) == {"source_workload", "source_workload_namespace", "requests", "tcp", "metrics"}
    assert isinstance(stats["requests"], list) and isinstance(stats["metrics"], list)
    for series in stats["requests"]:
        assert {"response_code", "requests", "duration_ms"} <= set(series)
    assert isinstance(gw.prometheus(), str)


TCP_ECHO_YAML = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: tcp-echo-gateway}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 31400, name: tcp, protocol: TCP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tcp-echo}}
spec:
  hosts: ["*"]
  gateways: [tcp-echo-gateway]
  tcp:
  - route:
    - destination: {{host: tcp-echo, port: {{number: 9000}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: tcp-echo}}
spec:
  hosts: [tcp-echo]
  ports: [{{number: 9000, name: tcp, protocol: TCP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{tcp: {port}}}}}
"""


def test_stats_carry_tcp_series(sluice_gateway):
    listener = socket.create_server(("127.0.0.1", 0))
    echoed = []

    def echo():
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(4096):
                echoed.append(data)
                conn.sendall(data)

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    gw = sluice_gateway(TCP_ECHO_YAML.format(port=listener.getsockname()[1]))
    with socket.create_connection(("127.0.0.1", gw.port(31400)), timeout=10) as c:
        c.sendall(b"hello tcp")
        got = b""
        while len(got) < 9:
            got += c.recv(64)
    assert got == b"hello tcp"
    thread.join(10)
    listener.close()
    # The close reaches the gateway's worker after ours: wait for its count.
    deadline = time.monotonic() + 10
    while True:
        tcp = gw.stats()["tcp"]
        if sum(t["connections_closed"] for t in tcp) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert len(tcp) == 1
    series = tcp[0]
    assert series["destination_service"] == "tcp-echo.default.svc.cluster.local"
    assert series["response_flags"] == "-"
    assert (series["connections_opened"], series["connections_closed"]) == (1, 1)
    assert (series["received_bytes"], series["sent_bytes"]) == (9, 9)
    assert not gw.stats()["requests"]


def test_stop_drains_and_close_forbids_use(fake_upstream, bookinfo_yaml):
    up = fake_upstream()
    gw = sluice.Gateway(bookinfo_yaml(up.port, up.port))
    url = gw.url(8080)
    gw.stop()
    gw.stop()
    with pytest.raises(OSError):
        get(url + "/reviews/1", {"host": "bookinfo.example.com"})
    gw.close()
    with pytest.raises(ValueError, match="closed"):
        gw.port(8080)


def test_fault_and_weighted_split_repeat_with_a_seed(fake_upstream):
    a = fake_upstream(body="a")
    b = fake_upstream(body="b")
    yaml = f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ['*']}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc}}
spec:
  hosts: [svc]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {a.port}}}, labels: {{v: a}}}}
  - {{address: 127.0.0.1, ports: {{http: {b.port}}}, labels: {{v: b}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc}}
spec:
  host: svc
  subsets: [{{name: a, labels: {{v: a}}}}, {{name: b, labels: {{v: b}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc}}
spec:
  hosts: ['*']
  gateways: [gw]
  http:
  - match: [{{uri: {{prefix: /fault}}}}]
    fault: {{abort: {{httpStatus: 503, percentage: {{value: 50}}}}}}
    route: [{{destination: {{host: svc, subset: a}}}}]
  - route:
    - {{destination: {{host: svc, subset: a}}, weight: 50}}
    - {{destination: {{host: svc, subset: b}}, weight: 50}}
"""

    def run(seed):
        with sluice.Gateway(yaml, seed=seed) as gw:
            url = gw.url(80)
            split = [get(url + "/")[2] for _ in range(24)]
            faults = [get(url + "/fault")[0] for _ in range(24)]
            return split, faults

    first = run(7)
    assert first == run(7)
    assert set(first[0]) == {b"a", b"b"} and set(first[1]) == {200, 503}
