"""Configuration values that mirror sluice's C++ config (include/sluice/*.hpp).

They are plain dataclasses: build them, copy them, compare them. Nothing is
checked here; ``Gateway(config=...)`` and ``Gateway.apply(config=...)``
validate the whole configuration at once and raise ``sluice.ConfigError``
naming the object and field, exactly as the C++ ``compile()`` does.

Durations are seconds (floats); percentages are 0..100.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

__all__ = [
    "StringMatch", "HeaderMatch", "QueryParamMatch", "Matcher", "HeaderOperations",
    "Destination", "DirectResponse", "Redirect", "Rewrite", "RetryPolicy", "FaultDelay",
    "FaultAbort", "Fault", "Mirror", "Route", "VirtualHost", "Router", "Endpoint", "Subset",
    "ConsistentHash", "ConnectionPool", "OutlierDetection", "HealthCheck", "Upstream",
    "Listener", "GatewayConfig",
]


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
    uri: str = ""
    authority: str = ""
    scheme: str = ""
    port: int = 0
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
    backoff_base: float = 0.025


@dataclass
class FaultDelay:
    fixed_delay: float = 0.0
    percentage: float = 0.0


@dataclass
class FaultAbort:
    http_status: int = 0
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
class Route:
    """One rule: ``matches`` are ORed; one action (destinations, redirect or
    direct_response)."""

    name: str = ""
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
    algorithm: str = "ring_hash"


@dataclass
class ConnectionPool:
    connect_timeout: float = 10.0
    max_connections: int = 0xFFFFFFFF
    max_pending_requests: int = 0xFFFFFFFF
    max_requests_per_connection: int = 0


@dataclass
class OutlierDetection:
    consecutive_5xx: int = 5
    consecutive_gateway_errors: int = 0
    interval: float = 10.0
    base_ejection_time: float = 30.0
    max_ejection_percent: int = 10


@dataclass
class HealthCheck:
    path: str = "/"
    interval: float = 10.0
    timeout: float = 1.0
    healthy_threshold: int = 1
    unhealthy_threshold: int = 3


@dataclass
class Upstream:
    """``load_balancer``: round_robin, least_request, random or
    consistent_hash (with ``consistent_hash``)."""

    name: str
    endpoints: List[Endpoint] = field(default_factory=list)
    subsets: List[Subset] = field(default_factory=list)
    load_balancer: str = "least_request"
    consistent_hash: Optional[ConsistentHash] = None
    pool: ConnectionPool = field(default_factory=ConnectionPool)
    outlier_detection: Optional[OutlierDetection] = None
    health_check: Optional[HealthCheck] = None


@dataclass
class Listener:
    """A plain-HTTP listener. ``address`` None: the Gateway's ``bind``;
    ``port`` 0: the OS picks one (``Gateway.port(name)`` tells)."""

    name: str
    router: str
    port: int = 0
    address: Optional[str] = None


@dataclass
class GatewayConfig:
    listeners: List[Listener] = field(default_factory=list)
    routers: List[Router] = field(default_factory=list)
    upstreams: List[Upstream] = field(default_factory=list)
