"""Configuration values that mirror sluice's C++ config (include/sluice/*.hpp).

They are plain dataclasses: build them, copy them, compare them. Nothing is
checked here; ``Gateway(config=...)`` and ``Gateway.apply(config=...)``
validate the whole configuration at once and raise ``sluice.ConfigError``
naming the object and field, exactly as the C++ ``compile()`` does.

Durations are seconds (floats); percentages are 0..100. Enumerations are
the C++ enumerators' names as strings (``"round_robin"``, ``"tls1_3"``,
``"deny"``). PEM material is text; ``TlsServer.from_files`` and
``UpstreamTls.from_files`` read it from files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import pathlib
from typing import Dict, List, Optional, Tuple, Union

__all__ = [
    "StringMatch", "HeaderMatch", "QueryParamMatch", "Matcher", "HeaderOperations",
    "Destination", "DirectResponse", "Redirect", "Rewrite", "RetryPolicy", "FaultDelay",
    "FaultAbort", "Fault", "Mirror", "CorsPolicy", "Route", "VirtualHost", "Router", "Endpoint",
    "Subset", "ConsistentHash", "TcpKeepalive", "ConnectionPool", "OutlierDetection", "HealthCheck",
    "UpstreamTls", "ServiceIdentity", "Upstream", "TlsServer", "TlsPassthroughRoute", "Listener",
    "Limits", "JwtHeaderLocation", "JwtClaimToHeader", "JwtProvider", "AuthzSource",
    "AuthzOperation", "AuthzCondition", "AuthzRule", "AuthorizationPolicy", "ExtAuthzRequestBody",
    "ExtAuthzHttpProvider", "SecurityConfig", "FractionalPercent", "TokenBucket",
    "HeaderValueOption", "DescriptorEntry", "RequestHeadersAction", "RemoteAddressAction",
    "GenericKeyAction", "HeaderValueMatchAction", "DestinationClusterAction", "RateLimitRule",
    "RateLimitAttachment", "LocalRateLimitDescriptor", "LocalRateLimit", "LocalRateLimitOverride",
    "GlobalRateLimit", "RateLimitServiceLimit", "RateLimitDescriptor", "RateLimitServiceConfig",
    "RateLimitConfig", "GatewayConfig",
]

PathLike = Union[str, "pathlib.Path"]


def _read(path: Optional[PathLike]) -> str:
    return "" if path is None else pathlib.Path(path).read_text()


@dataclass
class StringMatch:
    """A string condition. ``kind`` is exact, prefix, suffix, regex (RE2,
    whole value) or present."""

    kind: str = "present"
    value: str = ""

    @staticmethod
    def exact(value: str) -> "StringMatch":
        return StringMatch("exact", value)

    @staticmethod
    def prefix(value: str) -> "StringMatch":
        return StringMatch("prefix", value)

    @staticmethod
    def suffix(value: str) -> "StringMatch":
        return StringMatch("suffix", value)

    @staticmethod
    def regex(value: str) -> "StringMatch":
        return StringMatch("regex", value)

    @staticmethod
    def present() -> "StringMatch":
        return StringMatch("present", "")


@dataclass
class HeaderMatch:
    """A header condition; ``invert`` means the header must not match."""

    name: str
    match: StringMatch = field(default_factory=StringMatch)
    invert: bool = False


@dataclass
class QueryParamMatch:
    name: str
    match: StringMatch = field(default_factory=StringMatch)


@dataclass
class Matcher:
    """Istio HTTPMatchRequest: every set condition must hold."""

    uri: Optional[StringMatch] = None
    ignore_uri_case: bool = False
    method: Optional[StringMatch] = None
    authority: Optional[StringMatch] = None
    scheme: Optional[StringMatch] = None
    headers: List[HeaderMatch] = field(default_factory=list)
    query_params: List[QueryParamMatch] = field(default_factory=list)
    port: Optional[int] = None


@dataclass
class HeaderOperations:
    """Header edits, applied in the order remove, set, add."""

    set: Dict[str, str] = field(default_factory=dict)
    add: List[Tuple[str, str]] = field(default_factory=list)
    remove: List[str] = field(default_factory=list)


@dataclass
class Destination:
    upstream: str
    subset: str = ""
    weight: int = 1
    request_headers: HeaderOperations = field(default_factory=HeaderOperations)
    response_headers: HeaderOperations = field(default_factory=HeaderOperations)


@dataclass
class DirectResponse:
    status: int = 200
    body: str = ""


@dataclass
class Redirect:
    """``derive_port``: none, from_protocol_default or from_request_port."""

    uri: str = ""
    authority: str = ""
    scheme: str = ""
    port: int = 0
    derive_port: str = "none"
    code: int = 301


@dataclass
class Rewrite:
    uri: Optional[str] = None
    uri_regex: Optional[Tuple[str, str]] = None
    authority: str = ""


@dataclass
class RetryPolicy:
    """Istio HTTPRetry; the defaults are Istio's default policy."""

    attempts: int = 2
    per_try_timeout: float = 0.0
    retry_on: str = "connect-failure,refused-stream,unavailable,cancelled,503"
    retry_ignore_previous_hosts: bool = True
    backoff_base: float = 0.025
    max_replay_bytes: int = 64 * 1024  # larger bodies are not retried


@dataclass
class FaultDelay:
    fixed_delay: float = 0.0
    percentage: float = 0.0


@dataclass
class FaultAbort:
    http_status: int = 0
    grpc_status: Optional[int] = None
    percentage: float = 0.0


@dataclass
class Fault:
    delay: Optional[FaultDelay] = None
    abort: Optional[FaultAbort] = None


@dataclass
class Mirror:
    upstream: str
    subset: str = ""
    percentage: float = 100.0


@dataclass
class CorsPolicy:
    """Istio CorsPolicy. ``allow_origins``: exact, prefix or regex matches;
    ``max_age`` in whole seconds."""

    allow_origins: List[StringMatch] = field(default_factory=list)
    allow_methods: List[str] = field(default_factory=list)
    allow_headers: List[str] = field(default_factory=list)
    expose_headers: List[str] = field(default_factory=list)
    max_age: Optional[int] = None
    allow_credentials: Optional[bool] = None
    forward_unmatched_preflights: bool = True


@dataclass
class Route:
    """One rule: ``matches`` are ORed; one action (destinations, redirect or
    direct_response). ``origin`` names the resource it came from in config
    dumps (``"VirtualService default/reviews"``)."""

    name: str = ""
    origin: str = ""
    matches: List[Matcher] = field(default_factory=list)
    destinations: List[Destination] = field(default_factory=list)
    redirect: Optional[Redirect] = None
    direct_response: Optional[DirectResponse] = None
    rewrite: Optional[Rewrite] = None
    request_headers: HeaderOperations = field(default_factory=HeaderOperations)
    response_headers: HeaderOperations = field(default_factory=HeaderOperations)
    timeout: float = 0.0
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    fault: Optional[Fault] = None
    mirrors: List[Mirror] = field(default_factory=list)
    cors: Optional[CorsPolicy] = None


@dataclass
class VirtualHost:
    name: str
    domains: List[str] = field(default_factory=lambda: ["*"])
    routes: List[Route] = field(default_factory=list)
    https_redirect: bool = False


@dataclass
class Router:
    name: str
    virtual_hosts: List[VirtualHost] = field(default_factory=list)


@dataclass
class Endpoint:
    address: str
    port: int
    labels: Dict[str, str] = field(default_factory=dict)
    weight: int = 1


@dataclass
class Subset:
    name: str
    labels: Dict[str, str] = field(default_factory=dict)


@dataclass
class ConsistentHash:
    """``source``: header, cookie, source_ip or query_parameter;
    ``algorithm``: ring_hash or maglev."""

    source: str = "header"
    name: str = ""
    cookie_ttl: int = 0  # seconds; a generated cookie's lifetime
    cookie_path: str = ""
    algorithm: str = "ring_hash"
    minimum_ring_size: int = 1024
    maglev_table_size: int = 65537


@dataclass
class TcpKeepalive:
    probes: int = 9
    time: int = 7200  # seconds
    interval: int = 75  # seconds


@dataclass
class ConnectionPool:
    """Istio connectionPool; limits apply per upstream across workers."""

    connect_timeout: float = 10.0
    idle_timeout: float = 3600.0
    max_requests_per_connection: int = 0
    max_idle_per_endpoint: int = 64
    max_connections: int = 0xFFFFFFFF
    max_pending_requests: int = 0xFFFFFFFF
    max_retries: int = 0xFFFFFFFF
    tcp_keepalive: Optional[TcpKeepalive] = None


@dataclass
class OutlierDetection:
    consecutive_5xx: int = 5
    consecutive_gateway_errors: int = 0
    interval: float = 10.0
    base_ejection_time: float = 30.0
    max_ejection_percent: int = 10
    min_health_percent: int = 0


@dataclass
class HealthCheck:
    path: str = "/"
    host: str = ""
    interval: float = 10.0
    timeout: float = 1.0
    healthy_threshold: int = 1
    unhealthy_threshold: int = 3


@dataclass
class UpstreamTls:
    """TLS origination (DestinationRule trafficPolicy.tls). ``mode``: simple
    or mutual; PEM text (empty ``ca_certificates``: the system store)."""

    mode: str = "simple"
    sni: str = ""
    ca_certificates: str = ""
    client_certificate: str = ""
    private_key: str = ""
    subject_alt_names: List[str] = field(default_factory=list)
    insecure_skip_verify: bool = False

    @staticmethod
    def from_files(ca_file: Optional[PathLike] = None, cert_file: Optional[PathLike] = None,
                   key_file: Optional[PathLike] = None, **kwargs: object) -> "UpstreamTls":
        """Reads the PEM files now; ``mutual`` when a client certificate is given."""
        kwargs.setdefault("mode", "mutual" if cert_file else "simple")
        return UpstreamTls(ca_certificates=_read(ca_file), client_certificate=_read(cert_file),
                           private_key=_read(key_file), **kwargs)  # type: ignore[arg-type]


@dataclass
class ServiceIdentity:
    """The service telemetry names (destination_service...). Empty ``host``:
    the upstream's name."""

    host: str = ""
    name: str = ""
    namespace: str = ""


@dataclass
class Upstream:
    """``load_balancer``: round_robin, least_request, random, passthrough or
    consistent_hash (with ``consistent_hash``). ``warmup``: whole seconds of
    slow start for new endpoints."""

    name: str
    endpoints: List[Endpoint] = field(default_factory=list)
    subsets: List[Subset] = field(default_factory=list)
    load_balancer: str = "least_request"
    consistent_hash: Optional[ConsistentHash] = None
    pool: ConnectionPool = field(default_factory=ConnectionPool)
    outlier_detection: Optional[OutlierDetection] = None
    health_check: Optional[HealthCheck] = None
    service: ServiceIdentity = field(default_factory=ServiceIdentity)
    warmup: int = 0
    tls: Optional[UpstreamTls] = None


@dataclass
class TlsServer:
    """TLS termination for ``sni_hosts`` on a listener (an Istio server with
    tls mode SIMPLE, MUTUAL or OPTIONAL_MUTUAL). ``mode``: simple, mutual or
    optional_mutual. Versions: tls_auto, tls1_0, tls1_1, tls1_2, tls1_3.
    PEM text; ``from_files`` reads it from files."""

    sni_hosts: List[str] = field(default_factory=lambda: ["*"])
    mode: str = "simple"
    certificate_chain: str = ""
    private_key: str = ""
    ca_certificates: str = ""  # client CAs, mutual modes
    subject_alt_names: List[str] = field(default_factory=list)
    verify_certificate_spki: List[str] = field(default_factory=list)
    verify_certificate_hash: List[str] = field(default_factory=list)
    min_version: str = "tls1_2"
    max_version: str = "tls_auto"
    cipher_suites: List[str] = field(default_factory=list)

    @staticmethod
    def from_files(cert_file: PathLike, key_file: PathLike, ca_file: Optional[PathLike] = None,
                   **kwargs: object) -> "TlsServer":
        """Reads the PEM files now (the certificate chain, its key, and the
        client CAs for the mutual modes)."""
        return TlsServer(certificate_chain=_read(cert_file), private_key=_read(key_file),
                         ca_certificates=_read(ca_file), **kwargs)  # type: ignore[arg-type]


@dataclass
class TlsPassthroughRoute:
    """A TLS connection whose SNI matches is relayed as TCP, not terminated."""

    sni_hosts: List[str]
    upstream: str
    subset: str = ""


@dataclass
class Listener:
    """A listener: plain HTTP, or TLS with ``tls_servers`` (terminated) and
    ``passthrough`` routes. ``address`` None: the Gateway's ``bind``;
    ``port`` 0: the OS picks one (``Gateway.port(name)`` tells)."""

    name: str
    router: str
    port: int = 0
    address: Optional[str] = None
    tls_servers: List[TlsServer] = field(default_factory=list)
    passthrough: List[TlsPassthroughRoute] = field(default_factory=list)
    tls_handshake_timeout: float = 10.0


@dataclass
class Limits:
    """Bounds on downstream connections (Envoy's defaults). A duration of 0
    disables that bound."""

    max_request_header_bytes: int = 60 * 1024
    max_request_headers: int = 100
    max_response_header_bytes: int = 60 * 1024
    max_response_headers: int = 100
    max_connections: int = 100_000
    max_connections_per_client: int = 0
    request_header_timeout: float = 10.0
    idle_timeout: float = 3600.0
    stream_idle_timeout: float = 300.0
    request_timeout: float = 0.0
    max_stream_duration: float = 0.0
    upstream_response_timeout: float = 0.0
    drain_timeout: float = 5.0


# ---- security (RequestAuthentication, AuthorizationPolicy, ext_authz) ----


@dataclass
class JwtHeaderLocation:
    name: str
    prefix: str = ""


@dataclass
class JwtClaimToHeader:
    header: str
    claim: str


@dataclass
class JwtProvider:
    """One jwtRules entry of a RequestAuthentication. ``jwks`` is the key
    set as JSON text; else ``jwks_uri``; else OpenID discovery."""

    issuer: str = ""
    audiences: List[str] = field(default_factory=list)
    jwks: str = ""
    jwks_uri: str = ""
    timeout: float = 5.0
    from_headers: List[JwtHeaderLocation] = field(default_factory=list)
    from_params: List[str] = field(default_factory=list)
    from_cookies: List[str] = field(default_factory=list)
    forward_original_token: bool = False
    output_payload_to_header: str = ""
    output_claim_to_headers: List[JwtClaimToHeader] = field(default_factory=list)
    space_delimited_claims: List[str] = field(default_factory=list)
    source: str = ""  # named in errors, e.g. "RequestAuthentication ns/name"


@dataclass
class AuthzSource:
    principals: List[str] = field(default_factory=list)
    not_principals: List[str] = field(default_factory=list)
    request_principals: List[str] = field(default_factory=list)
    not_request_principals: List[str] = field(default_factory=list)
    namespaces: List[str] = field(default_factory=list)
    not_namespaces: List[str] = field(default_factory=list)
    ip_blocks: List[str] = field(default_factory=list)
    not_ip_blocks: List[str] = field(default_factory=list)
    remote_ip_blocks: List[str] = field(default_factory=list)
    not_remote_ip_blocks: List[str] = field(default_factory=list)


@dataclass
class AuthzOperation:
    hosts: List[str] = field(default_factory=list)
    not_hosts: List[str] = field(default_factory=list)
    ports: List[str] = field(default_factory=list)
    not_ports: List[str] = field(default_factory=list)
    methods: List[str] = field(default_factory=list)
    not_methods: List[str] = field(default_factory=list)
    paths: List[str] = field(default_factory=list)
    not_paths: List[str] = field(default_factory=list)


@dataclass
class AuthzCondition:
    """``key``: request.headers[NAME], source.ip, remote.ip,
    request.auth.claims[NAME], ... (Istio's condition keys)."""

    key: str
    values: List[str] = field(default_factory=list)
    not_values: List[str] = field(default_factory=list)


@dataclass
class AuthzRule:
    from_: List[AuthzSource] = field(default_factory=list)  # Istio's `from`
    to: List[AuthzOperation] = field(default_factory=list)
    when: List[AuthzCondition] = field(default_factory=list)


@dataclass
class AuthorizationPolicy:
    """``action``: allow, deny, audit or custom (with ``provider``)."""

    name: str
    namespace: str = ""
    action: str = "allow"
    provider: str = ""
    rules: List[AuthzRule] = field(default_factory=list)


@dataclass
class ExtAuthzRequestBody:
    max_request_bytes: int = 0
    allow_partial_message: bool = False
    pack_as_bytes: bool = False


@dataclass
class ExtAuthzHttpProvider:
    """Istio's envoyExtAuthzHttp extension provider."""

    name: str
    service: str
    port: int = 0
    path_prefix: str = ""
    timeout: float = 600.0
    fail_open: bool = False
    status_on_error: int = 403
    include_request_headers_in_check: List[str] = field(default_factory=list)
    include_additional_headers_in_check: List[Tuple[str, str]] = field(default_factory=list)
    headers_to_upstream_on_allow: List[str] = field(default_factory=list)
    headers_to_downstream_on_allow: List[str] = field(default_factory=list)
    headers_to_downstream_on_deny: List[str] = field(default_factory=list)
    include_request_body_in_check: Optional[ExtAuthzRequestBody] = None


@dataclass
class SecurityConfig:
    jwt_providers: List[JwtProvider] = field(default_factory=list)
    authorization: List[AuthorizationPolicy] = field(default_factory=list)
    ext_authz_providers: List[ExtAuthzHttpProvider] = field(default_factory=list)
    root_namespace: str = "istio-system"
    num_trusted_proxies: int = 0


# ---- rate limits (Envoy's local_ratelimit and ratelimit filters) ----


@dataclass
class FractionalPercent:
    """``denominator``: hundred, ten_thousand or million."""

    numerator: int = 0
    denominator: str = "hundred"


@dataclass
class TokenBucket:
    max_tokens: int = 0
    tokens_per_fill: int = 1
    fill_interval: float = 0.0  # seconds, at least 0.05


@dataclass
class HeaderValueOption:
    """``action``: append_if_exists_or_add, add_if_absent,
    overwrite_if_exists_or_add or overwrite_if_exists."""

    name: str
    value: str = ""
    action: str = "append_if_exists_or_add"
    keep_empty_value: bool = False


@dataclass
class DescriptorEntry:
    key: str
    value: str


@dataclass
class RequestHeadersAction:
    header_name: str
    descriptor_key: str
    skip_if_absent: bool = False


@dataclass
class RemoteAddressAction:
    pass


@dataclass
class GenericKeyAction:
    descriptor_value: str
    descriptor_key: str = ""


@dataclass
class HeaderValueMatchAction:
    descriptor_value: str
    descriptor_key: str = ""
    expect_match: bool = True
    headers: List[HeaderMatch] = field(default_factory=list)


@dataclass
class DestinationClusterAction:
    pass


RateLimitAction = Union[RequestHeadersAction, RemoteAddressAction, GenericKeyAction,
                        HeaderValueMatchAction, DestinationClusterAction]


@dataclass
class RateLimitRule:
    """One descriptor, built from ``actions`` in order."""

    actions: List[RateLimitAction] = field(default_factory=list)
    stage: int = 0


@dataclass
class RateLimitAttachment:
    """The rate_limits of a virtual host (``route`` empty) or one route."""

    virtual_host: str
    route: str = ""
    rate_limits: List[RateLimitRule] = field(default_factory=list)
    router: str = ""


@dataclass
class LocalRateLimitDescriptor:
    entries: List[DescriptorEntry]
    token_bucket: TokenBucket


@dataclass
class LocalRateLimit:
    """envoy.filters.http.local_ratelimit. ``vh_rate_limits``:
    override_route, include or ignore. Envoy's defaults enable and enforce
    nothing: set ``filter_enabled`` and ``filter_enforced``."""

    stat_prefix: str = "http_local_rate_limiter"
    status: int = 429
    token_bucket: Optional[TokenBucket] = None
    filter_enabled: FractionalPercent = field(default_factory=FractionalPercent)
    filter_enforced: FractionalPercent = field(default_factory=FractionalPercent)
    response_headers_to_add: List[HeaderValueOption] = field(default_factory=list)
    request_headers_to_add_when_not_enforced: List[HeaderValueOption] = field(default_factory=list)
    descriptors: List[LocalRateLimitDescriptor] = field(default_factory=list)
    stage: int = 0
    always_consume_default_token_bucket: bool = True
    vh_rate_limits: str = "override_route"


@dataclass
class LocalRateLimitOverride:
    """A local config for one virtual host or route (``route`` empty: every
    route of the virtual host); its ``token_bucket`` is required."""

    virtual_host: str
    config: LocalRateLimit
    route: str = ""
    router: str = ""


@dataclass
class GlobalRateLimit:
    """envoy.filters.http.ratelimit, counted on Redis by sluice itself."""

    domain: str
    stage: int = 0
    failure_mode_deny: bool = False
    timeout: float = 0.02
    rate_limited_status: int = 429
    status_on_error: int = 500
    disable_x_envoy_ratelimited_header: bool = False
    filter_enforced: FractionalPercent = field(default_factory=lambda: FractionalPercent(100))
    vh_rate_limits: str = "override_route"


@dataclass
class RateLimitServiceLimit:
    """``unit``: unset, second, minute, hour or day."""

    unit: str = "unset"
    requests_per_unit: int = 0
    unlimited: bool = False
    name: str = ""
    replaces: List[str] = field(default_factory=list)


@dataclass
class RateLimitDescriptor:
    key: str
    value: str = ""
    rate_limit: Optional[RateLimitServiceLimit] = None
    shadow_mode: bool = False
    detailed_metric: bool = False
    descriptors: List["RateLimitDescriptor"] = field(default_factory=list)


@dataclass
class RateLimitServiceConfig:
    """The reference rate-limit service's configuration for one domain."""

    domain: str
    descriptors: List[RateLimitDescriptor] = field(default_factory=list)


@dataclass
class RateLimitConfig:
    """Local buckets and global limits. ``global_`` is the C++ ``global``."""

    local: Optional[LocalRateLimit] = None
    local_overrides: List[LocalRateLimitOverride] = field(default_factory=list)
    global_: Optional[GlobalRateLimit] = None
    rate_limits: List[RateLimitAttachment] = field(default_factory=list)
    service: List[RateLimitServiceConfig] = field(default_factory=list)
    redis_address: str = ""
    redis_key_prefix: str = ""


@dataclass
class GatewayConfig:
    """The whole configuration. ``path_normalization``: none, base,
    merge_slashes or decode_and_merge_slashes (Istio's default BASE)."""

    listeners: List[Listener] = field(default_factory=list)
    routers: List[Router] = field(default_factory=list)
    upstreams: List[Upstream] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    path_normalization: str = "base"
    security: SecurityConfig = field(default_factory=SecurityConfig)
    rate_limits: RateLimitConfig = field(default_factory=RateLimitConfig)
