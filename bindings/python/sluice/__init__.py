"""sluice: an in-process HTTP gateway with Istio's semantics, for tests and hosts.

    import sluice

    with sluice.Gateway(yaml=ISTIO_YAML) as gw:
        url = gw.url(8080)                      # the Istio Gateway server port
        why = gw.explain("GET", "http://bookinfo.example.com/reviews/1",
                         headers={"end-user": "jason"})

See ``sluice.testing`` for the pytest fixtures.
"""

from __future__ import annotations

import atexit
import datetime
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Protocol, Sequence, Tuple, Union

from . import _sluice
from ._errors import ConfigError
from ._sluice import Headers, ManualClock, RequestContext
from .config import *  # noqa: F401,F403 (the config value types are part of the API)
from .config import GatewayConfig
from .config import __all__ as _config_all

__version__: str = _sluice.__version__

__all__ = [
    "Gateway", "Response", "ConfigError", "ManualClock", "SupportsNow", "RequestContext", "Headers",
    "__version__",
] + list(_config_all)


@dataclass
class Response:
    """An answer a hook returns to short-circuit a request."""

    status: int = 200
    body: Union[str, bytes] = b""
    headers: Union[Mapping[str, str], Sequence[Tuple[str, str]]] = field(default_factory=dict)


Hook = Callable[[RequestContext], Optional[Response]]


class SupportsNow(Protocol):
    """What ``clock=`` accepts besides a ManualClock."""

    def now(self) -> Union[float, int, datetime.timedelta, datetime.datetime]: ...

_open: "weakref.WeakSet[Gateway]" = weakref.WeakSet()


class Gateway:
    """A sluice gateway running in this process.

    Configure it with Istio YAML (``yaml=`` text or ``paths=`` of files and
    directories) or with ``config=`` (a ``sluice.GatewayConfig``). Istio
    Gateway servers listen on ports the OS picks, on ``bind``; ``port(8080)``
    tells which one serves the server declared with port 8080.

    Options: ``workers`` (threads), ``seed`` (fixes every random draw:
    weighted splits, fault percentages, load balancing; 0 draws a random
    seed), ``clock`` (time for timeouts, fault delays, outlier ejection,
    health checks, rate-limit refills and JWT expiry: a ``ManualClock``, or
    any object whose ``now()`` returns seconds as a number, a ``timedelta``
    or a ``datetime``; only its differences count, from the real time at
    construction; a value going back reads as the last one; after moving
    such an object call ``clock_advanced()``), and the hooks ``on_request``, ``on_upstream_chosen``,
    ``on_response_headers``, ``on_log``: callables taking a
    ``RequestContext``; the first two may return a ``Response`` to answer
    instead of the upstream. Hooks run on the gateway's threads, holding the
    GIL only for the call.

    A bad configuration raises ``ConfigError``. The gateway starts at once
    (unless ``start=False``) and stops on ``stop()``, ``close()`` or at the
    end of a ``with`` block.
    """

    def __init__(
        self,
        yaml: Optional[str] = None,
        *,
        paths: Optional[Sequence[str]] = None,
        config: Optional[GatewayConfig] = None,
        workers: int = 1,
        seed: int = 0,
        bind: str = "127.0.0.1",
        clock: Optional[Union[ManualClock, "SupportsNow"]] = None,
        on_request: Optional[Hook] = None,
        on_upstream_chosen: Optional[Hook] = None,
        on_response_headers: Optional[Callable[[RequestContext], None]] = None,
        on_log: Optional[Callable[[RequestContext], None]] = None,
        start: bool = True,
    ) -> None:
        self._g = _sluice.Gateway(
            yaml=yaml, paths=None if paths is None else [str(p) for p in paths], config=config,
            workers=workers, seed=seed, bind=bind, clock=clock, on_request=on_request,
            on_upstream_chosen=on_upstream_chosen, on_response_headers=on_response_headers,
            on_log=on_log, start=start)
        self.clock = clock
        _open.add(self)

    def apply(self, yaml: Optional[str] = None, *, paths: Optional[Sequence[str]] = None,
              config: Optional[GatewayConfig] = None) -> None:
        """Replaces the configuration whole; on ``ConfigError`` nothing changes.
        Requests in flight finish on the configuration they started with."""
        self._g.apply(yaml=yaml, paths=None if paths is None else [str(p) for p in paths],
                      config=config)

    def start(self) -> None:
        """Starts the worker threads (done by the constructor unless start=False)."""
        self._g.start()

    def stop(self) -> None:
        """Drains: stops accepting, lets requests in flight finish, stops the workers."""
        self._g.stop()

    def close(self) -> None:
        """stop(), then frees the gateway; it cannot be used afterwards."""
        g, self._g = self._g, None
        if g is not None:
            g.stop()
            del g

    def port(self, listener: Union[int, str]) -> int:
        """The bound port of a listener: by name, or by the port its Istio
        server (or ``Listener.port``) declares. KeyError when there is none."""
        return self._live().port(listener)

    def url(self, listener: Union[int, str]) -> str:
        """``http://bind:port`` (https for TLS listeners) for ``port(listener)``."""
        return self._live().url(listener)

    @property
    def listeners(self) -> List[str]:
        """Listener names, in configuration order."""
        return self._live().listeners

    def explain(self, method: str, url: str, headers: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
        """Why a request would go where it goes, without sending it.

        ``url`` is absolute; its port picks the listener (the declared or the
        bound one), and without a port the only listener is used. Returns a
        dict: ``matched``, ``virtual_host``, ``route``, ``reasons`` (one per
        earlier rule: ``route``, ``index``, ``reason``), ``destination``
        (``upstream``, ``subset``, ``weight``; None for a split),
        ``destinations``, ``redirect`` / ``direct_response`` when the route
        answers itself, ``virtual_service`` and ``rule`` for Istio YAML,
        ``security`` (authentication and authorization), and ``text``.
        """
        return self._live().explain(method, url, dict(headers or {}))

    def upstream(self, name: str) -> Dict[str, Any]:
        """An upstream's state: ``endpoints`` (``address``, ``healthy``,
        ``ejected``, ``ejections``, ``active_requests``, ``connections``) and
        its counters. For Istio YAML the name is Envoy's
        (``outbound|9080||reviews``) or the host alone when it has one port.
        KeyError for an unknown upstream."""
        return self._live().upstream(name)

    def stats(self) -> Dict[str, Any]:
        """The gateway's metrics: ``requests`` (Istio's request series, with
        their histograms), ``tcp`` (Istio's TCP series: connections opened
        and closed, bytes received and sent) and ``metrics`` (counters and
        gauges)."""
        return self._live().stats()

    def prometheus(self) -> str:
        """The metrics in Prometheus' text format."""
        return self._live().prometheus()

    def config_dump(self) -> Dict[str, Any]:
        """The running snapshot as the admin ``/config_dump`` shows it:
        ``listeners``, ``routers`` (virtual hosts, routes, their actions),
        ``upstreams`` (endpoints, subsets, balancer, pool, outlier detection,
        health check, TLS). Private keys never appear."""
        return self._live().config_dump()

    def clock_advanced(self) -> None:
        """Runs now what the new time makes due, after a ``clock=`` object
        other than a ``ManualClock`` moved (``ManualClock.advance`` does this
        itself). Without it, the gateway notices within 50 ms of real time."""
        self._live().clock_advanced()

    @property
    def hook_errors(self) -> List[str]:
        """Exceptions raised by hooks so far (a request whose on_request or
        on_upstream_chosen raised was answered 500)."""
        return self._live().hook_errors

    def _live(self) -> "_sluice.Gateway":
        if self._g is None:
            raise ValueError("the gateway is closed")
        return self._g

    def __enter__(self) -> "Gateway":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@atexit.register
def _close_all() -> None:
    # Workers must not call into an interpreter that is finalizing.
    for g in list(_open):
        g.close()
