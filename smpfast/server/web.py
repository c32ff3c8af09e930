"""The information page (``[WEB]``): generated at start, served over HTTP/1.1.

As the reference server: the page is written as ``index.html`` into ``static_path`` at every
start and every file under ``static_path`` is served (``/`` and directories by their
``index.html``), over plain HTTP on ``[WEB] http``, over HTTPS on ``[WEB] https`` with the
operator's certificate, and, when the HTTPS port is also an SMP port, on that port: a TLS
client that sends a server name (SNI: browsers do, SMP clients never do) gets the web
certificate and the page, every other client gets SMP. The reference decides by SNI, not by
ALPN: its own clients offer ``http/1.1`` alone to servers reached on port 443.

HTTP parsing is h11's (sans-IO); ``serve_http`` runs it over any pair of receive/send
functions, so one loop serves plain TCP, a TLS stream and a shared SMP connection.
"""

from __future__ import annotations

import html
import logging
import mimetypes
import os
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import h11
import trio

from ..config import ConfigError, InformationConfig, WebConfig
from ..startup_errors import ListenError
from ..transport import BlockConnection, TransportError
from ..transport.listen import open_listeners

log = logging.getLogger("smpfast.server.web")

INDEX = "index.html"
MAX_REQUEST_HEAD = 16 * 1024  # bytes of request line + headers
REQUEST_TIMEOUT = 30.0  # seconds a client may take to send a request (idle keep-alive too)
MIN_RSA_BITS = 4096  # the reference refuses weaker HTTPS keys (its checkHTTPSCredentials)
HTTP_ALPN = ("http/1.1",)  # HTTP/2 is not served: browsers fall back to HTTP/1.1


class WebError(ConfigError):
    """[WEB] cannot be set up (unreadable certificate, weak key, unwritable static_path)."""


# --- the page -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerFacts:
    """What the page says about this server besides [INFORMATION]."""

    address: str  # without the queue-creation password
    message_expiration_days: int | None
    stats_enabled: bool
    new_queues_allowed: bool
    password_required: bool
    version: str


def _link(url: str) -> str:
    """A link for http(s) URLs only (no javascript: or data: links from the INI)."""
    text = html.escape(url)
    if url.startswith(("https://", "http://")):
        return f'<a href="{html.escape(url, quote=True)}" rel="noopener">{text}</a>'
    return text


def _email(address: str) -> str:
    quoted = urllib.parse.quote(address, safe="@.+-_")
    return f'<a href="mailto:{quoted}">{html.escape(address)}</a>'


def information_rows(info: InformationConfig | None) -> list[tuple[str, str]]:
    """The published [INFORMATION] fields as (label, plain text), in page order."""
    if info is None:
        return []
    rows: list[tuple[str, str]] = []

    def add(label: str, value: str | None, country: str | None = None) -> None:
        if value:
            rows.append((label, f"{value} ({country})" if country else value))

    add("Operator", info.operator, info.operator_country)
    add("Website", info.website)
    add("Usage conditions", info.usage_conditions)
    add("Amendments to the conditions", info.condition_amendments)
    add("Administrator (SimpleX)", info.admin_simplex)
    add("Administrator (email)", info.admin_email)
    add("Administrator PGP key", info.admin_pgp, None)
    add("Administrator PGP fingerprint", info.admin_pgp_fingerprint)
    add("Complaints (SimpleX)", info.complaints_simplex)
    add("Complaints (email)", info.complaints_email)
    add("Complaints PGP key", info.complaints_pgp)
    add("Complaints PGP fingerprint", info.complaints_pgp_fingerprint)
    add("Hosting provider", info.hosting, info.hosting_country)
    add("Hosting type", info.hosting_type.capitalize() if info.hosting_type else None)
    add("Server country", info.server_country)
    add("Source code", info.source_code)
    return rows


def _cell(label: str, value: str) -> str:
    if "email" in label:
        return _email(value)
    return _link(value)


def render_page(info: InformationConfig | None, facts: ServerFacts) -> str:
    """The information page (HTML5, no scripts, no external resources)."""
    rows = information_rows(info)
    if rows:
        info_html = "\n".join(
            f"<tr><th>{html.escape(label)}</th><td>{_cell(label, value)}</td></tr>" for label, value in rows
        )
        info_table = f"<table>\n{info_html}\n</table>"
    else:
        info_table = "<p>The operator has not published information about this server.</p>"
    expiry = "never" if facts.message_expiration_days is None else f"after {facts.message_expiration_days} days"
    settings = [
        ("Stored", "queues and messages (on disk)"),
        ("Undelivered messages expire", expiry),
        ("New queues", "allowed" if facts.new_queues_allowed else "not allowed"),
        ("Password to create queues", "required" if facts.password_required else "not required"),
        ("Statistics", "kept (counts only)" if facts.stats_enabled else "not kept"),
        ("Server software", f"smpfast {facts.version}"),
    ]
    settings_html = "\n".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in settings
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>SimpleX messaging relay</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; }}
table {{ border-collapse: collapse; width: 100%; margin-bottom: 1.5rem; }}
th, td {{ text-align: left; vertical-align: top; padding: .3rem .6rem; border-bottom: 1px solid #ccc; }}
th {{ width: 40%; font-weight: 600; }}
code {{ word-break: break-all; }}
</style>
</head>
<body>
<h1>SimpleX messaging relay</h1>
<p>This server relays messages of the SimpleX Messaging Protocol (SMP). To use it, add its
address to the servers of a SimpleX client:</p>
<p><code id="address">{html.escape(facts.address)}</code></p>
<h2>Server information</h2>
{info_table}
<h2>Configuration</h2>
<table>
{settings_html}
</table>
</body>
</html>
"""


def write_site(static_path: Path, page: str) -> Path:
    """Write the page as ``index.html`` (replaced at once); returns its path."""
    try:
        static_path.mkdir(parents=True, exist_ok=True)
        index = static_path / INDEX
        tmp = static_path / f".{INDEX}.{os.getpid()}.tmp"  # workers write it at once, each its own
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(index)
    except OSError as e:
        raise WebError(f"[WEB] static_path: cannot write {static_path / INDEX}: {e.strerror or e}") from None
    return index


# --- serving files --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    body: bytes
    extra_headers: tuple[tuple[str, str], ...] = ()


def _content_type(path: Path) -> str:
    guessed, _ = mimetypes.guess_type(path.name)
    if guessed is None:
        return "application/octet-stream"
    return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed


class StaticSite:
    """Files under one directory; nothing outside it (symlinks included) is ever served."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _file(self, target: str) -> Path | None:
        path = urllib.parse.unquote(target.split("?", 1)[0].split("#", 1)[0])
        if not path.startswith("/") or "\x00" in path:
            return None
        # The reference serves /.well-known/ from well-known/ (its file server hides dot files).
        if path == "/.well-known" or path.startswith("/.well-known/"):
            path = "/well-known" + path[len("/.well-known"):]
        candidate = (self.root / path.lstrip("/")).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            return None
        if candidate.is_dir():
            candidate = candidate / INDEX
        if any(part.startswith(".") for part in candidate.relative_to(self.root).parts):
            return None
        return candidate if candidate.is_file() else None

    def respond(self, method: str, target: str) -> Reply:
        if method not in ("GET", "HEAD"):
            return Reply(405, "text/plain; charset=utf-8", b"only GET and HEAD\n", (("Allow", "GET, HEAD"),))
        path = self._file(target)
        if path is None:
            return Reply(404, "text/plain; charset=utf-8", b"not found\n")
        try:
            body = path.read_bytes()
        except OSError:
            return Reply(404, "text/plain; charset=utf-8", b"not found\n")
        return Reply(200, _content_type(path), body)


Receive = Callable[[], Awaitable[bytes]]
Send = Callable[[bytes], Awaitable[None]]


async def _next_event(conn: h11.Connection, receive: Receive) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await receive())


async def serve_http(receive: Receive, send: Send, site: StaticSite) -> None:
    """Answer HTTP/1.1 requests (keep-alive) until the client closes, errs or idles."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
    while True:
        try:
            with trio.move_on_after(REQUEST_TIMEOUT):
                event = await _next_event(conn, receive)
                if isinstance(event, h11.Request):
                    while not isinstance(await _next_event(conn, receive), h11.EndOfMessage):
                        pass  # a body (only GET and HEAD are served): read and drop it
            if not isinstance(event, h11.Request) or conn.our_state is not h11.SEND_RESPONSE:
                return  # timed out, closed, or a protocol switch
            method = event.method.decode("ascii", "replace").upper()
            reply = site.respond(method, event.target.decode("ascii", "replace"))
        except h11.RemoteProtocolError as e:
            if conn.our_state is h11.SEND_RESPONSE:
                reply = Reply(e.error_status_hint, "text/plain; charset=utf-8", b"bad request\n")
                method = "GET"
            else:
                return
        headers = [
            ("Content-Type", reply.content_type),
            ("Content-Length", str(len(reply.body))),
            ("X-Content-Type-Options", "nosniff"),
            *reply.extra_headers,
        ]
        await send(conn.send(h11.Response(status_code=reply.status, headers=headers)))
        if method != "HEAD" and reply.body:
            await send(conn.send(h11.Data(data=reply.body)))
        await send(conn.send(h11.EndOfMessage()))
        if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return  # h11 says this connection cannot carry another request
        conn.start_next_cycle()


# --- TLS -------------------------------------------------------------------------------------------


def https_context(cert: Path, key: Path) -> ssl.SSLContext:
    """The web certificate's context; refuses RSA keys under 4096 bits and non-RSA keys
    like the reference (its check: a 4096-bit RSA certificate, e.g. from Let's Encrypt)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        leaf = x509.load_pem_x509_certificate(cert.read_bytes())
    except OSError as e:
        raise WebError(f"[WEB] cert: cannot read {cert}: {e.strerror or e}") from None
    except ValueError as e:
        raise WebError(f"[WEB] cert: {cert} is not a PEM certificate ({e})") from None
    public = leaf.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or public.key_size < MIN_RSA_BITS:
        raise WebError(
            f"[WEB] cert: {cert} must have a {MIN_RSA_BITS}-bit RSA key (as the reference "
            "requires); e.g. certbot certonly --standalone -d your.domain --key-type rsa "
            "--rsa-key-size 4096"
        )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except OSError as e:
        raise WebError(f"[WEB] key: cannot read {key}: {e.strerror or e}") from None
    except ssl.SSLError as e:
        raise WebError(f"[WEB] cert/key: {cert} and {key} do not load as a pair ({e.reason or e})") from None
    ctx.set_alpn_protocols(list(HTTP_ALPN))
    return ctx


def share_port(smp_context: ssl.SSLContext, web_context: ssl.SSLContext) -> None:
    """Let ``smp_context``'s connections that name a server (SNI) switch to the web
    certificate and ALPN; after the handshake ``conn.ssl_context is web_context`` tells."""

    def choose(ssl_object: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if server_name is not None:
            ssl_object.context = web_context

    smp_context.sni_callback = choose


class WebServer:
    """The page's files, and where they are served."""

    def __init__(self, config: WebConfig, page: str, smp_ports: tuple[int, ...]) -> None:
        self.config = config
        self.index = write_site(config.static_path, page)
        self.site = StaticSite(config.static_path)
        self.tls: ssl.SSLContext | None = None
        if config.https is not None:
            assert config.cert is not None and config.key is not None
            self.tls = https_context(config.cert, config.key)
        # The HTTPS port is an SMP port: shared by SNI (no listener of its own).
        self.shared_port = config.https if config.https in smp_ports else None
        self.ports: dict[str, int] = {}  # "http"/"https" -> bound port, once listening

    def is_web(self, conn: BlockConnection) -> bool:
        """A connection on the shared port whose client sent SNI (a browser)."""
        return self.tls is not None and conn.ssl_context is self.tls

    async def serve_shared(self, conn: BlockConnection) -> None:
        try:
            await serve_http(conn.receive_some, conn.send, self.site)
        except TransportError:
            pass  # the browser went away

    async def _serve_plain(self, stream: trio.SocketStream) -> None:
        try:
            await serve_http(lambda: stream.receive_some(65536), stream.send_all, self.site)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    async def _serve_tls(self, stream: trio.SocketStream) -> None:
        assert self.tls is not None
        tls = trio.SSLStream(stream, self.tls, server_side=True)
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                await tls.do_handshake()
            await serve_http(lambda: tls.receive_some(65536), tls.send_all, self.site)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def serve(self, host: str | None, task_status: trio.TaskStatus[dict[str, int]] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on the ports of their own ([WEB] http, and https unless shared)."""
        async with trio.open_nursery() as nursery:
            for name, port, handler in (
                ("http", self.config.http, self._serve_plain),
                ("https", None if self.shared_port else self.config.https, self._serve_tls),
            ):
                if port is None:
                    continue
                try:
                    listeners = await open_listeners(port, host)
                except OSError as e:
                    raise ListenError("web", host, port, e) from e
                self.ports[name] = listeners[0].socket.getsockname()[1]
                nursery.start_soon(trio.serve_listeners, handler, listeners)
                log.info("information page on %s port %d", name.upper(), self.ports[name])
            log.info("information page written to %s", self.index)
            if self.shared_port is not None:
                self.ports["https"] = self.shared_port
                log.info("information page on HTTPS port %d, shared with SMP (by SNI)", self.shared_port)
            task_status.started(dict(self.ports))
