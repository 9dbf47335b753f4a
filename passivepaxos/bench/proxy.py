"""A small threaded HTTP reverse proxy between a real SDK and an emulator: it counts every
request, can add a fixed delay to each (an injected round trip), and injects faults.

The benchmark puts one in front of moto_server for every system under test, so requests are
counted the same way for passivepaxos, deltalake and slatedb, and the injected latency is the
same for all; the tests use its fault rules.

Put it in front of moto_server (S3) or fake-gcs-server (GCS) and point the SDK at
``proxy.url``; every request is forwarded unchanged (method, path and query, every header
including ``Host`` so request signatures still verify, and the body) unless a fault rule
matches it:

- ``fail_next(n, status, body, headers, method, path_contains)``: answer the next ``n``
  matching requests with ``status`` *without* forwarding them (503 SlowDown for S3, 429 for
  GCS, 403 for a permission test...).
- ``drop_response_next(n, method, path_contains)``: forward the next ``n`` matching requests
  (so they take effect upstream), then close the client connection without sending any
  response: a lost response, the classic "did my conditional write happen?" case.

Rules are consumed first-come first-served; a request matching several takes the oldest.
``requests`` lists ``(method, path)`` of everything seen (including faulted requests),
``counts()`` classifies them (``request_kind``), ``reset()`` forgets rules and history.
``delay`` (seconds, settable while running) is slept before each request is forwarded.
Standard library only.

Bodies are read in full before forwarding: ``Transfer-Encoding: chunked`` is decoded and
the body re-sent with ``Content-Length`` (``aws-chunked`` *content* encoding is left
untouched, it is part of the signed payload). Responses are read in full and sent back
with ``Content-Length``. ``Expect: 100-continue`` is answered by the proxy itself.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

__all__ = ["FaultProxy", "request_kind"]

# RFC 9110 hop-by-hop headers: meaningful for one connection only, never forwarded.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


def request_kind(method: str, path: str) -> str:
    """``write``, ``list``, ``read`` or ``delete``: the classes object stores bill by.

    S3 and GCS bill LIST at the write (class A) price and GET/HEAD at the read price;
    DELETE is free on both. S3 lists are ``GET /bucket?list-type=2...`` (or ``?prefix=``),
    GCS lists are ``GET /storage/v1/b/<bucket>/o`` with no object name after ``/o``.
    A DynamoDB request (``POST /``, recorded as ``/#<X-Amz-Target>``) is a ``read`` (read
    capacity: GetItem, Query, Scan, Describe*) or a ``write`` (write capacity, deletes
    included: DynamoDB bills a DeleteItem as a write).
    """
    method = method.upper()
    _, hash_, target = path.partition("#")
    if hash_:
        op = target.rpartition(".")[2]
        return (
            "read" if op.startswith(("Get", "Query", "Scan", "Describe", "BatchGet")) else "write"
        )
    if method in ("PUT", "POST", "PATCH"):
        return "write"
    if method == "DELETE":
        return "delete"
    base, _, query = path.partition("?")
    if (
        "list-type=" in query
        or "prefix=" in query
        or "comp=list" in query  # Azure List Blobs / List Containers
        or base.rstrip("/").endswith("/o")
    ):
        return "list"
    if base.count("/") <= 1 and method == "GET" and query:
        return "list"  # GET /bucket?... (other bucket-level reads)
    return "read"


@dataclass
class _Rule:
    kind: str  # "fail" | "drop"
    remaining: int
    method: str | None = None
    path_contains: str | None = None
    status: int = 500
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_contains is None or self.path_contains in path


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive towards the client; we always send a length
    # headers and body leave in separate writes: with Nagle on, the body waits for the
    # client's delayed ACK (~40 ms on Linux) and every GET through the proxy looks slow
    disable_nagle_algorithm = True
    server: _ProxyServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    # One method for every verb.
    def _handle(self) -> None:
        proxy = self.server.proxy
        body = self._read_body()
        target = self.headers.get("X-Amz-Target")  # a DynamoDB (JSON API) operation
        seen = self.path if target is None else f"{self.path}#{target}"
        rule = proxy._take_rule(self.command, seen)
        if proxy.delay > 0:
            time.sleep(proxy.delay)
        if rule is not None and rule.kind == "fail":
            self._respond(rule.status, list(rule.headers.items()), rule.body)
            return
        try:
            status, reason, headers, payload = self._forward(body)
        except OSError as exc:
            if rule is not None:  # a drop: the client sees no response either way
                self._abort()
                return
            msg = f"fault proxy: upstream unreachable: {exc}".encode()
            self._respond(502, [("Content-Type", "text/plain")], msg)
            return
        if rule is not None:  # "drop": the request took effect upstream; lose the answer
            self._abort()
            return
        self._respond(status, headers, payload, reason=reason)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle

    def _read_body(self) -> bytes:
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length:
            return self.rfile.read(int(length))
        return b""

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise ConnectionError("client closed inside a chunked body")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, up to the empty line
                    trailer = self.rfile.readline(65537)
                    if trailer in (b"\r\n", b"\n", b""):
                        return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(65537)  # CRLF after the chunk

    def _forward(self, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        up = self.server.proxy._upstream
        conn = http.client.HTTPConnection(up.hostname or "127.0.0.1", up.port or 80, timeout=60)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            for name, value in self.headers.items():
                lname = name.lower()
                if lname in _HOP_BY_HOP or lname == "expect":
                    continue
                if lname == "content-length" and chunked:
                    continue
                conn.putheader(name, value)
            if chunked or (body and "Content-Length" not in self.headers):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
            payload = resp.read()
            return resp.status, resp.reason, resp.getheaders(), payload
        finally:
            conn.close()

    def _respond(
        self,
        status: int,
        headers: Iterable[tuple[str, str]],
        payload: bytes,
        *,
        reason: str | None = None,
    ) -> None:
        self.send_response_only(status, reason)
        headers = list(headers)
        if not any(name.lower() == "date" for name, _ in headers):
            self.send_header("Date", self.date_time_string())
        no_body = self.command == "HEAD" or status in (204, 304) or 100 <= status < 200
        for name, value in headers:
            lname = name.lower()
            if lname in _HOP_BY_HOP:
                continue
            if lname == "content-length" and not no_body:
                continue  # recomputed below from the bytes actually sent
            self.send_header(name, value)  # (a HEAD keeps upstream's Content-Length)
        if not no_body:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not no_body and payload:
            self.wfile.write(payload)
        self.wfile.flush()

    def _abort(self) -> None:
        """Close the client connection without a byte of response."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(address, _Handler)


class FaultProxy:
    """A reverse proxy to ``upstream`` (``http://host:port``) with fault injection."""

    def __init__(
        self, upstream: str, *, host: str = "127.0.0.1", port: int = 0, delay: float = 0.0
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self._upstream = urlsplit(self.upstream)
        if self._upstream.scheme != "http":
            raise ValueError(f"only http:// upstreams are supported, not {upstream!r}")
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self.delay = delay
        self.requests: list[tuple[str, str]] = []
        self._server: _ProxyServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("proxy not started")
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def start(self) -> FaultProxy:
        if self._server is None:
            self._server = _ProxyServer((self._host, self._port), self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"faultproxy-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- fault rules ----------------------------------------------------------------------

    def fail_next(
        self,
        n: int,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Answer the next ``n`` matching requests with ``status`` without forwarding them."""
        with self._lock:
            self._rules.append(
                _Rule("fail", n, method, path_contains, status, body, dict(headers or {}))
            )

    def drop_response_next(
        self, n: int, method: str | None = None, path_contains: str | None = None
    ) -> None:
        """Forward the next ``n`` matching requests, then hang up without any response."""
        with self._lock:
            self._rules.append(_Rule("drop", n, method, path_contains))

    def pending(self) -> int:
        """How many faults are still armed."""
        with self._lock:
            return sum(r.remaining for r in self._rules)

    def reset(self) -> None:
        with self._lock:
            self._rules.clear()
            self.requests.clear()

    def counts(self) -> Counter[str]:
        """Requests seen since the last ``reset()``, by ``request_kind``."""
        with self._lock:
            return Counter(request_kind(m, p) for m, p in self.requests)

    def _take_rule(self, method: str, path: str) -> _Rule | None:
        with self._lock:
            self.requests.append((method, path))
            for rule in self._rules:
                if rule.remaining > 0 and rule.matches(method, path):
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
                    return rule
            return None
