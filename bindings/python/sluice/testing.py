"""pytest plugin: ``sluice_gateway`` and ``fake_upstream`` fixtures.

Enable it with ``pytest -p sluice.testing`` or, in a conftest.py,
``pytest_plugins = ["sluice.testing"]``.

    def test_jason(sluice_gateway, fake_upstream):
        v2 = fake_upstream(body="reviews-v2")
        gw = sluice_gateway(yaml=VS.format(port=v2.port))
        ...

Everything a fixture made is stopped when the test ends.
"""

from __future__ import annotations

import http.server
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

import pytest

from . import Gateway

__all__ = ["FakeUpstream", "RecordedRequest", "Reply"]


@dataclass
class RecordedRequest:
    """A request a FakeUpstream received."""

    method: str
    path: str
    headers: Dict[str, str]  # names lower-cased; the last value of a repeated name
    body: bytes


@dataclass
class Reply:
    status: int = 200
    body: Union[str, bytes] = b""
    headers: Dict[str, str] = field(default_factory=dict)
    latency: float = 0.0  # seconds before answering


class FakeUpstream:
    """An HTTP/1.1 server on 127.0.0.1 (an OS-chosen port) in this process.

    It records every request (``requests``) and answers with ``reply`` unless
    ``route(path_prefix, ...)`` set a more specific one. Its ``name`` is in
    the ``x-upstream`` header of every answer.
    """

    def __init__(self, status: int = 200, body: Union[str, bytes] = b"", headers: Optional[Dict[str, str]] = None,
                 latency: float = 0.0, name: str = "upstream") -> None:
        self.name = name
        self.reply = Reply(status, body, dict(headers or {}), latency)
        self._routes: List[Tuple[str, Reply]] = []
        self._lock = threading.Lock()
        self._requests: List[RecordedRequest] = []
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"fake-{name}", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def requests(self) -> List[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def route(self, path_prefix: str, status: int = 200, body: Union[str, bytes] = b"",
              headers: Optional[Dict[str, str]] = None, latency: float = 0.0) -> None:
        """Answer requests whose path starts with ``path_prefix`` this way
        (the longest prefix wins)."""
        with self._lock:
            self._routes.append((path_prefix, Reply(status, body, dict(headers or {}), latency)))
            self._routes.sort(key=lambda r: -len(r[0]))

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer_for(self, path: str) -> Reply:
        with self._lock:
            for prefix, reply in self._routes:
                if path.startswith(prefix):
                    return reply
            return self.reply

    def _handler(self) -> type:
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                record = RecordedRequest(self.command, self.path,
                                         {k.lower(): v for k, v in self.headers.items()}, body)
                with upstream._lock:
                    upstream._requests.append(record)
                reply = upstream._answer_for(self.path)
                if reply.latency:
                    time.sleep(reply.latency)  # the upstream's own behaviour, not the test's wait
                data = reply.body.encode() if isinstance(reply.body, str) else reply.body
                self.send_response(reply.status)
                self.send_header("x-upstream", upstream.name)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

        return Handler


@pytest.fixture
def fake_upstream() -> Iterator[Callable[..., FakeUpstream]]:
    """A factory of FakeUpstreams: ``fake_upstream(status=200, body=...,
    headers={...}, latency=0.0, name=...)``. All are closed after the test."""
    made: List[FakeUpstream] = []

    def make(**kwargs: object) -> FakeUpstream:
        u = FakeUpstream(**kwargs)  # type: ignore[arg-type]
        made.append(u)
        return u

    yield make
    for u in made:
        u.close()


@pytest.fixture
def sluice_gateway() -> Iterator[Callable[..., Gateway]]:
    """A factory of started Gateways, with Gateway's arguments
    (``yaml=``, ``paths=`` or ``config=``, ``seed=``, hooks, ...). All are
    closed after the test; one whose hooks raised fails the test."""
    made: List[Gateway] = []

    def make(yaml: Optional[str] = None, **kwargs: object) -> Gateway:
        g = Gateway(yaml, **kwargs)  # type: ignore[arg-type]
        made.append(g)
        return g

    yield make
    errors = []
    for g in made:
        if g._g is not None:
            errors += g.hook_errors
        g.close()
    if errors:
        pytest.fail("sluice hooks raised:\n" + "\n".join(errors), pytrace=False)
