"""The Python config mirrors GatewayConfig: the same gateway from Istio YAML
and from objects gives the same snapshot (config dump, explain, answers);
TLS listeners, CORS, limits and security policies from objects."""

import shutil
import ssl
import subprocess
import urllib.request

import pytest

import sluice
from sluice import (AuthorizationPolicy, AuthzOperation, AuthzRule, ConnectionPool, CorsPolicy, Destination,
                    DirectResponse, Endpoint, GatewayConfig, HeaderMatch, JwtProvider, Limits, Listener, Matcher,
                    OutlierDetection, RetryPolicy, Route, Router, SecurityConfig, ServiceIdentity, StringMatch,
                    Subset, TlsServer, Upstream, VirtualHost)
from conftest import get

YAML = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 8080, name: http, protocol: HTTP}}, hosts: ['*']}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc, namespace: default}}
spec:
  hosts: [svc]
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {v1}}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{http: {v2}}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc, namespace: default}}
spec:
  host: svc
  trafficPolicy:
    loadBalancer: {{simple: ROUND_ROBIN}}
    connectionPool:
      tcp: {{connectTimeout: 2s, maxConnections: 10}}
      http: {{http1MaxPendingRequests: 5}}
    outlierDetection: {{consecutive5xxErrors: 3, interval: 5s, baseEjectionTime: 20s, maxEjectionPercent: 50}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc, namespace: default}}
spec:
  hosts: ['*']
  gateways: [gw]
  http:
  - name: admin
    match: [{{uri: {{prefix: /admin}}}}]
    directResponse: {{status: 403, body: {{string: no}}}}
  - name: jason
    match: [{{headers: {{end-user: {{exact: jason}}}}}}]
    route: [{{destination: {{host: svc, subset: v2}}}}]
    timeout: 3s
    retries: {{attempts: 1, perTryTimeout: 1s, retryOn: 5xx}}
  - name: rest
    route:
    - {{destination: {{host: svc, subset: v1}}, weight: 80}}
    - {{destination: {{host: svc, subset: v2}}, weight: 20}}
    corsPolicy:
      allowOrigins: [{{exact: 'https://a.example'}}]
      allowMethods: [GET]
      maxAge: 60s
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: deny-private, namespace: istio-system}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  action: DENY
  rules: [{{to: [{{operation: {{paths: ['/private*']}}}}]}}]
"""


def same_config_as_objects(v1, v2):
    """What the Istio loader makes of YAML, written by hand."""
    upstream = "outbound|80||svc"
    origin = "VirtualService default/svc"
    routes = [
        Route(name="default/svc/http[0]", origin=origin, matches=[Matcher(uri=StringMatch.prefix("/admin"))],
              direct_response=DirectResponse(403, "no")),
        Route(name="default/svc/http[1]", origin=origin,
              matches=[Matcher(headers=[HeaderMatch("end-user", StringMatch.exact("jason"))])],
              destinations=[Destination(upstream, "v2", 100)], timeout=3.0,
              retries=RetryPolicy(attempts=1, per_try_timeout=1.0, retry_on="5xx")),
        Route(name="default/svc/http[2]", origin=origin,
              destinations=[Destination(upstream, "v1", 80), Destination(upstream, "v2", 20)],
              cors=CorsPolicy(allow_origins=[StringMatch.exact("https://a.example")], allow_methods=["GET"],
                              max_age=60)),
    ]
    return GatewayConfig(
        listeners=[Listener("http.8080", router="http.8080")],
        routers=[Router("http.8080", [VirtualHost("*", ["*"], routes)])],
        upstreams=[Upstream(upstream, service=ServiceIdentity("svc", "svc", "default"),
                            endpoints=[Endpoint("127.0.0.1", v1, {"version": "v1"}),
                                       Endpoint("127.0.0.1", v2, {"version": "v2"})],
                            subsets=[Subset("v1", {"version": "v1"}), Subset("v2", {"version": "v2"})],
                            load_balancer="round_robin",
                            pool=ConnectionPool(connect_timeout=2.0, max_connections=10, max_pending_requests=5),
                            outlier_detection=OutlierDetection(consecutive_5xx=3, interval=5.0,
                                                               base_ejection_time=20.0,
                                                               max_ejection_percent=50))],
        security=SecurityConfig(authorization=[AuthorizationPolicy(
            "deny-private", "istio-system", "deny", rules=[AuthzRule(to=[AuthzOperation(paths=["/private*"])])])]))


YAML_ONLY = {"virtual_service", "rule", "rule_name"}  # where an Istio route came from


def explained(gw, method, url, headers=None):
    why = gw.explain(method, url, headers or {})
    return {k: v for k, v in why.items() if k not in YAML_ONLY}


def test_yaml_and_objects_give_the_same_snapshot(sluice_gateway, fake_upstream):
    v1, v2 = fake_upstream(body="v1"), fake_upstream(body="v2")
    from_yaml = sluice_gateway(YAML.format(v1=v1.port, v2=v2.port), seed=3)
    from_objects = sluice_gateway(config=same_config_as_objects(v1.port, v2.port), seed=3)
    assert from_objects.config_dump() == from_yaml.config_dump()
    assert from_yaml.config_dump()["upstreams"][0]["outlier_detection"]["base_ejection_time_ms"] == 20000

    requests = [("GET", "/admin/x", {}), ("GET", "/r", {"end-user": "jason"}), ("GET", "/r", {}),
                ("GET", "/private/x", {}), ("OPTIONS", "/r", {"origin": "https://a.example",
                                                              "access-control-request-method": "GET"})]
    for method, path, headers in requests:
        a = explained(from_yaml, method, "http://any.example:8080" + path, headers)
        b = explained(from_objects, method, f"http://any.example:{from_objects.port('http.8080')}" + path, headers)
        assert a == b, (method, path)
        assert a["matched"] is True
    assert explained(from_yaml, "GET", "http://x:8080/private/a")["security"]["status"] == 403

    # Served alike: routes, the DENY policy, CORS preflights, seeded splits.
    for method, path, headers in requests:
        ya = get(from_yaml.url(8080) + path, headers, method)
        ob = get(from_objects.url("http.8080") + path, headers, method)
        assert (ya[0], ya[2]) == (ob[0], ob[2]), (method, path)
        assert {k: v for k, v in ya[1].items() if k.startswith("access-control")} == \
               {k: v for k, v in ob[1].items() if k.startswith("access-control")}
    status, headers, _ = get(from_objects.url("http.8080") + "/r", {"origin": "https://a.example",
                                                                     "access-control-request-method": "GET"},
                             "OPTIONS")
    assert headers["access-control-allow-origin"] == "https://a.example" and headers["access-control-max-age"] == "60"
    assert get(from_objects.url("http.8080") + "/private/x")[0] == 403


def test_limits_and_path_normalization_from_objects(sluice_gateway, fake_upstream):
    up = fake_upstream(body="ok")
    config = same_config_as_objects(up.port, up.port)
    config.limits = Limits(max_request_headers=5)
    config.path_normalization = "merge_slashes"
    gw = sluice_gateway(config=config)
    url = gw.url("http.8080")
    assert get(url + "//admin//x")[0] == 403  # merged into /admin/x
    assert get(url + "/r", {f"x-h{i}": "1" for i in range(8)})[0] == 431
    config.path_normalization = "sideways"
    with pytest.raises(ValueError, match="GatewayConfig.path_normalization"):
        gw.apply(config=config)


def test_security_errors_name_the_field(fake_upstream):
    config = same_config_as_objects(1, 2)
    config.security.jwt_providers = [JwtProvider(issuer="me", jwks="{not json")]
    with pytest.raises(sluice.ConfigError) as err:
        sluice.Gateway(config=config)
    assert "jwt_providers[0]" in str(err.value) or "jwks" in str(err.value)
    config.security.jwt_providers = []
    config.security.authorization[0].action = "maybe"
    with pytest.raises(ValueError, match="AuthorizationPolicy.action"):
        sluice.Gateway(config=config)


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for localhost (openssl, as the C++ TLS tests)."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    return cert, key


def test_tls_listener_from_certificate_files(sluice_gateway, certificate):
    cert, key = certificate
    teapot = Route(name="teapot", direct_response=DirectResponse(200, "over tls"))
    config = GatewayConfig(
        listeners=[Listener("https", router="main",
                            tls_servers=[TlsServer.from_files(cert, key, sni_hosts=["localhost"],
                                                              min_version="tls1_3")])],
        routers=[Router("main", [VirtualHost("all", ["*"], [teapot])])])
    gw = sluice_gateway(config=config)
    assert gw.url("https").startswith("https://")
    assert gw.config_dump()["listeners"][0]["tls_servers"][0]["mode"] == "SIMPLE"
    port = gw.port("https")
    context = ssl.create_default_context(cafile=str(cert))
    with urllib.request.urlopen(f"https://localhost:{port}/", context=context, timeout=10) as r:
        assert (r.status, r.read()) == (200, b"over tls")
    old = ssl.create_default_context(cafile=str(cert))
    old.maximum_version = ssl.TLSVersion.TLSv1_2  # below min_version
    with pytest.raises(OSError):
        urllib.request.urlopen(f"https://localhost:{port}/", context=old, timeout=10)
    config.listeners[0].tls_servers[0].mode = "sometimes"
    with pytest.raises(ValueError, match="TlsServer.mode"):
        gw.apply(config=config)


def test_every_config_class_reaches_the_library(fake_upstream):
    """Each dataclass with values off its defaults: the conversion reads
    every field (a misspelt one would raise AttributeError) and the library
    accepts the whole."""
    from sluice import (AuthzCondition, AuthzSource, ConsistentHash, DescriptorEntry, DestinationClusterAction,
                        ExtAuthzHttpProvider, ExtAuthzRequestBody, Fault, FaultAbort, FaultDelay, FractionalPercent,
                        GenericKeyAction, GlobalRateLimit, HeaderOperations, HeaderValueMatchAction,
                        HeaderValueOption, HealthCheck, JwtClaimToHeader, JwtHeaderLocation, LocalRateLimit,
                        LocalRateLimitDescriptor, LocalRateLimitOverride, Mirror, QueryParamMatch,
                        RateLimitAttachment, RateLimitConfig, RateLimitDescriptor, RateLimitRule,
                        RateLimitServiceConfig, RateLimitServiceLimit, Redirect, RemoteAddressAction,
                        RequestHeadersAction, Rewrite, TcpKeepalive, TokenBucket, UpstreamTls)
    up = fake_upstream()
    bucket = TokenBucket(10, 5, 1.0)
    local = LocalRateLimit(stat_prefix="local", status=503, token_bucket=bucket,
                           filter_enabled=FractionalPercent(50, "ten_thousand"),
                           filter_enforced=FractionalPercent(1, "million"),
                           response_headers_to_add=[HeaderValueOption("x-rl", "1", "overwrite_if_exists_or_add")],
                           request_headers_to_add_when_not_enforced=[HeaderValueOption("x-shadow", "1")],
                           descriptors=[LocalRateLimitDescriptor([DescriptorEntry("k", "v")], bucket)],
                           vh_rate_limits="include")
    actions = [RequestHeadersAction(":path", "path", skip_if_absent=True), RemoteAddressAction(),
               GenericKeyAction("g"), DestinationClusterAction(),
               HeaderValueMatchAction("m", headers=[HeaderMatch("x-m", StringMatch.prefix("a"))])]
    main = Route(name="main", matches=[Matcher(method=StringMatch.exact("GET"), scheme=StringMatch.exact("http"),
                                               authority=StringMatch.suffix(".example"), port=8080,
                                               ignore_uri_case=True, uri=StringMatch.prefix("/a"),
                                               query_params=[QueryParamMatch("q", StringMatch.present())])],
                 destinations=[Destination("svc", request_headers=HeaderOperations({"a": "1"}, [("b", "2")], ["c"]))],
                 rewrite=Rewrite(uri_regex=("^/a(.*)", "/b\\1"), authority="b.example"),
                 fault=Fault(FaultDelay(0.5, 10.0), FaultAbort(grpc_status=14, percentage=5.0)),
                 mirrors=[Mirror("svc", percentage=50.0)],
                 retries=RetryPolicy(retry_ignore_previous_hosts=False, max_replay_bytes=1024))
    moved = Route(name="moved", redirect=Redirect(authority="b.example", derive_port="from_request_port", code=308))
    config = GatewayConfig(
        listeners=[Listener("http", router="main", tls_handshake_timeout=3.0)],
        routers=[Router("main", [VirtualHost("vh", ["*"], [main, moved])])],
        upstreams=[Upstream("svc", endpoints=[Endpoint("127.0.0.1", up.port)], load_balancer="consistent_hash",
                            consistent_hash=ConsistentHash("cookie", "session", cookie_ttl=60, cookie_path="/",
                                                           algorithm="maglev", maglev_table_size=251),
                            pool=ConnectionPool(idle_timeout=30.0, max_idle_per_endpoint=2, max_retries=3,
                                                tcp_keepalive=TcpKeepalive(3, 60, 10)),
                            health_check=HealthCheck(path="/healthz", host="svc.example", interval=5.0),
                            outlier_detection=OutlierDetection(min_health_percent=20),
                            tls=UpstreamTls(sni="svc.example", insecure_skip_verify=True), warmup=5)],
        security=SecurityConfig(
            jwt_providers=[JwtProvider(issuer="https://issuer.example", audiences=["a"],
                                       jwks_uri="https://issuer.example/jwks", timeout=2.0,
                                       from_headers=[JwtHeaderLocation("x-jwt", "Bearer ")], from_params=["t"],
                                       from_cookies=["c"], forward_original_token=True,
                                       output_payload_to_header="x-payload",
                                       output_claim_to_headers=[JwtClaimToHeader("x-sub", "sub")],
                                       space_delimited_claims=["scope"])],
            authorization=[AuthorizationPolicy("ext", "default", "custom", provider="authz",
                                               rules=[AuthzRule(from_=[AuthzSource(not_ip_blocks=["10.0.0.0/8"])],
                                                                when=[AuthzCondition("request.headers[x-a]",
                                                                                     ["1"])])])],
            ext_authz_providers=[ExtAuthzHttpProvider("authz", "svc", timeout=1.0, fail_open=True,
                                                      include_request_headers_in_check=["x-a"],
                                                      include_additional_headers_in_check=[("x-from", "gw")],
                                                      include_request_body_in_check=ExtAuthzRequestBody(100))],
            root_namespace="root", num_trusted_proxies=1),
        rate_limits=RateLimitConfig(
            local=local, local_overrides=[LocalRateLimitOverride("vh", local, route="main")],
            global_=GlobalRateLimit("d", failure_mode_deny=True, timeout=0.05),
            rate_limits=[RateLimitAttachment("vh", "main", [RateLimitRule(actions, stage=0)])],
            service=[RateLimitServiceConfig("d", [RateLimitDescriptor(
                "generic_key", "g", RateLimitServiceLimit("minute", 10, name="n"),
                descriptors=[RateLimitDescriptor("path", shadow_mode=True,
                                                 rate_limit=RateLimitServiceLimit(unlimited=True))])])],
            redis_address="127.0.0.1:1", redis_key_prefix="p_"))
    with sluice.Gateway(config=config, start=False) as gw:
        dump = gw.config_dump()
        assert dump["upstreams"][0]["load_balancer"] == "CONSISTENT_HASH"
        assert dump["upstreams"][0]["tls"] == {"mode": "SIMPLE", "sni": "svc.example"}
        assert dump["upstreams"][0]["health_check"]["path"] == "/healthz"
        assert dump["upstreams"][0]["pool"]["max_retries"] == 3
        assert [r["action"] for r in dump["routers"][0]["virtual_hosts"][0]["routes"]] == ["forward", "redirect"]
    config.rate_limits.rate_limits[0].rate_limits[0].actions.append("not an action")
    with pytest.raises(TypeError, match="RateLimitRule.actions"):
        sluice.Gateway(config=config, start=False)
