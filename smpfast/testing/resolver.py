"""A real HTTP name resolver on 127.0.0.1 for tests: the protocol a names server talks to
(``GET /resolve/<name>``, ``GET /health``; docs/protocol-v19-v20.md §5), serving records
from a dict, on a thread of this process (stdlib ``http.server``).

    with LocalResolver({"alice.simplex": NameRecord("Alice")}) as resolver:
        ... ResolverSettings(resolver.endpoint, ...) ...

A name maps to a ``NameRecord`` (200 with its JSON) or to a ``Reply`` (any status, body,
delay before the headers, or a body trickled out slowly); any other name is 404. With
``authorization`` set, a request without exactly that ``Authorization`` header gets 401.
Every request is recorded (``requests``: path, headers and the client's port). The server stops on exit from
the ``with`` block, and by itself after ``lifetime`` seconds at the latest.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..protocol.names import HEALTH_PATH, NameRecord

RESOLVE_PREFIX = "/resolve/"


@dataclass(frozen=True)
class Reply:
    """A scripted answer: ``delay`` seconds before the status line; with ``trickle`` the
    body goes out one byte every ``trickle`` seconds."""

    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    trickle: float | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]  # names in lower case
    client_port: int  # which TCP connection carried it


class LocalResolver:
    def __init__(self, records: dict[str, NameRecord | Reply] | None = None, *,
                 authorization: str | None = None, health: Reply | None = None,
                 lifetime: float = 300.0) -> None:
        self.records: dict[str, NameRecord | Reply] = dict(records or {})
        self.authorization = authorization
        self.health = health or Reply(200, b"ok")
        self.lifetime = lifetime
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self._stopped = False

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def resolve_requests(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith(RESOLVE_PREFIX)]

    def start(self) -> "LocalResolver":
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        # a short poll interval: stop() returns within it
        self._thread = threading.Thread(target=server.serve_forever, args=(0.02,), name="local-resolver", daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.lifetime, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        """Stop serving (idempotent; the lifetime timer calls it too)."""
        with self._lock:
            server, self._stopped = self._server, True
        if self._timer is not None:
            self._timer.cancel()
        if server is not None and self._thread is not None and self._thread.is_alive():
            server.shutdown()
            server.server_close()

    def __enter__(self) -> "LocalResolver":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # what the handler asks
    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _answer(self, path: str, headers: dict[str, str]) -> Reply:
        if self.authorization is not None and headers.get("authorization") != self.authorization:
            return Reply(401, b'{"error":"unauthorized"}')
        if path == HEALTH_PATH:
            return self.health
        if not path.startswith(RESOLVE_PREFIX):
            return Reply(404, b'{"error":"no such route"}')
        name = urllib.parse.unquote(path[len(RESOLVE_PREFIX):])
        found = self.records.get(name)
        if found is None:
            return Reply(404, b'{"error":"name not registered"}')
        if isinstance(found, NameRecord):
            return Reply(200, found.to_json(), headers={"Content-Type": "application/json"})
        return found


def _handler(resolver: LocalResolver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real resolver behind a proxy
        # headers and body go out as separate writes: without this, Nagle's algorithm holds
        # the body until the client's delayed ACK (~40 ms a request)
        disable_nagle_algorithm = True

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            headers = {k.lower(): v for k, v in self.headers.items()}
            resolver._record(Request(self.path, headers, self.client_address[1]))
            reply = resolver._answer(self.path, headers)
            try:
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if reply.trickle is None:
                    self.wfile.write(reply.body)
                else:
                    for i in range(len(reply.body)):
                        self.wfile.write(reply.body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(reply.trickle)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the server under test gave up: expected

        def log_message(self, format: str, *args: object) -> None:
            pass  # tests read ``requests`` instead

    return Handler
