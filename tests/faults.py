"""A fault-injecting HTTP proxy on loopback, in front of an S3 endpoint (the moto server).

Every request is forwarded to the endpoint unchanged (method, path, query, headers, body) and
its answer streamed back unchanged (status, headers such as Content-Length, ETag and
Content-Range, body), unless a seeded draw picks a fault for it:

- ``"500"``: an S3 ``InternalError`` answer; the request never reaches the store.
- ``"503"``: an S3 ``SlowDown`` answer (throttling); the request never reaches the store.
- ``"reset"``: the connection is reset (TCP RST) before anything is forwarded.
- ``"drop"``: the request is forwarded (a write *is* applied), then its answer is cut: an
  answer with a body (a GET) is sent up to half of its body, one without (a PUT, HEAD, DELETE)
  not at all, and the connection is reset. A client sees a read cut mid-body, or a write that
  failed although it happened.
- ``"latency"``: the request waits ``latency_s`` before it is forwarded (drawn on its own,
  so it combines with the other kinds).

Faults apply to the requests that match ``methods`` (``None``: all) and ``match`` (a regular
expression searched in the path; ``None``: all), at most ``limit`` of them (``None``: no limit);
:meth:`FaultProxy.set_faults` changes them while the proxy runs. ``injected`` counts what was done, by kind; ``requests`` counts the
requests by method.
"""

from __future__ import annotations

import http.client
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Collection, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

KINDS = ("500", "503", "reset", "drop")
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
}
_ERRORS = {
    "500": ("InternalError", "We encountered an internal error. Please try again."),
    "503": ("SlowDown", "Please reduce your request rate."),
}
_BLOCK = 1 << 16


class FaultProxy:
    """The proxy; ``endpoint`` is its URL (``http://127.0.0.1:PORT``). A context manager."""

    def __init__(
        self,
        upstream: str,
        rates: Mapping[str, float] | None = None,
        *,
        seed: int = 0,
        latency_s: float = 0.05,
        methods: Collection[str] | None = None,
        match: str | None = None,
        limit: int | None = None,
    ):
        target = urlsplit(upstream)
        self.upstream = (target.hostname or "127.0.0.1", target.port or 80)
        self.latency_s = float(latency_s)
        self.injected: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.set_faults(rates, methods=methods, match=match, limit=limit)
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def set_faults(
        self,
        rates: Mapping[str, float] | None = None,
        *,
        methods: Collection[str] | None = None,
        match: str | None = None,
        limit: int | None = None,
    ) -> None:
        """Fault rates per kind (``KINDS`` and ``"latency"``, each a probability per request; the
        kinds of ``KINDS`` together at most 1), for requests of ``methods`` whose path matches;
        after ``limit`` more faults of ``KINDS``, none."""
        rates = dict(rates or {})
        unknown = set(rates) - set(KINDS) - {"latency"}
        if unknown or any(not 0 <= r <= 1 for r in rates.values()) or sum(rates.get(k, 0) for k in KINDS) > 1:
            raise ValueError(f"fault rates {rates} are not probabilities of the kinds {KINDS} and 'latency'")
        with self._lock:
            self.rates = rates
            self.methods = {m.upper() for m in methods} if methods is not None else None
            self.match = re.compile(match) if match is not None else None
            self.left = limit

    def draw(self, method: str, path: str) -> tuple[str | None, bool]:
        """The fault for one request (a kind or ``None``) and whether it is delayed."""
        with self._lock:
            self.requests[method] += 1
            if (
                (self.methods is not None and method not in self.methods)
                or (self.match is not None and not self.match.search(path))
                or self.left == 0
            ):
                return None, False
            delayed = self._rng.random() < self.rates.get("latency", 0.0)
            u, edge, kind = self._rng.random(), 0.0, None
            for name in KINDS:
                edge += self.rates.get(name, 0.0)
                if u < edge:
                    kind = name
                    break
            if kind is not None:
                self.injected[kind] += 1
                if self.left is not None:
                    self.left -= 1
            if delayed:
                self.injected["latency"] += 1
            return kind, delayed

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up on a delayed answer, or a connection this proxy reset


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real endpoint; Expect: 100-continue answered
        _upstream: http.client.HTTPConnection | None = None

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                pieces = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(pieces)
                    pieces.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _reset(self) -> None:
            """Close the connection with a TCP reset, as a failing load balancer does."""
            self.close_connection = True
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

        def _error(self, kind: str) -> None:
            code, message = _ERRORS[kind]
            body = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                f"<RequestId>{uuid.uuid4().hex[:16]}</RequestId></Error>"
            ).encode()
            self.send_response(int(kind))
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _forward(self, body: bytes) -> http.client.HTTPResponse:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            for attempt in (0, 1):  # a kept-alive upstream connection may have been closed meanwhile
                if self._upstream is None:
                    self._upstream = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                try:
                    self._upstream.request(self.command, self.path, body=body, headers=headers)
                    return self._upstream.getresponse()
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                    self._upstream.close()
                    self._upstream = None
                    if attempt:
                        raise
            raise AssertionError("unreachable")

        def _handle(self) -> None:
            kind, delayed = proxy.draw(self.command, urlsplit(self.path).path)
            if kind == "reset":
                self._reset()
                return
            body = self._body()
            if delayed:
                time.sleep(proxy.latency_s)
            if kind in _ERRORS:
                self._error(kind)
                return
            try:
                response = self._forward(body)
            except OSError:
                self._reset()  # the endpoint is gone: so is the answer
                return
            head = self.command == "HEAD" or response.status in (204, 304) or 100 <= response.status < 200
            length = response.getheader("Content-Length")
            data = None
            if not head and length is None:  # a chunked answer: sent on with its length
                data = response.read()
                length = str(len(data))
            if kind == "drop" and (head or not int(length or 0)):  # no body to cut: the answer is lost
                response.read()
                self._reset()
                return
            self.send_response_only(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
            if head:
                response.read()
                return
            remaining = int(length or 0)
            cut = remaining // 2 if kind == "drop" else remaining
            sent = 0
            while sent < cut:
                block = data[sent : sent + _BLOCK] if data is not None else response.read(min(_BLOCK, cut - sent))
                if not block:
                    break
                self.wfile.write(block[: cut - sent])
                sent += len(block[: cut - sent])
            if kind == "drop":
                response.close()
                self._upstream = None
                self._reset()
                return
            response.read()  # drain, so the upstream connection can be reused

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    return Handler
