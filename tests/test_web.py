"""The information page ([WEB]): generated from [INFORMATION], served over plain HTTP, and over
HTTPS on a port shared with SMP, where a client that sends SNI (a browser) gets the page and
every other client SMP -- end to end against `smpfast start` on 127.0.0.1; and the page and
file serving as units."""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import smpfast.client as sc
from smpfast.config import InformationConfig
from smpfast.server.web import INDEX, ServerFacts, StaticSite, https_context, information_rows, render_page, WebError
from smpfast.testing.process import ServerProcess, free_port, init_data_dir, smpfast_command
from smpfast.testing.throwaway_certs import key_pem, make_cert, pem
from smpfast.transport import BLOCK_SIZE, open_block_connection

PASSWORD = "s3cret-create"
SNI = "relay.example.test"


def write_web_cert(directory: Path, key) -> tuple[Path, Path, bytes]:
    cert = make_cert(key, "localhost", ca=False)
    cert_file, key_file = directory / "web.crt", directory / "web.key"
    cert_file.write_bytes(pem(cert))
    key_file.write_bytes(key_pem(key))
    return cert_file, key_file, cert.public_bytes(serialization.Encoding.DER)


@dataclass
class WebServerUnderTest:
    directory: Path
    address: str
    smp_port: int
    shared_port: int
    http_port: int
    cert_der: bytes

    @property
    def key_hash(self) -> bytes:
        fp = self.address.split("//", 1)[1].split(":", 1)[0]
        return base64.urlsafe_b64decode(fp)


def _edit(ini: Path, *pairs: tuple[str, str]) -> None:
    text = ini.read_text()
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    ini.write_text(text)


@pytest.fixture(scope="module")
def web_server(tmp_path_factory) -> WebServerUnderTest:
    d = tmp_path_factory.mktemp("web") / "srv"
    smp_port, shared_port, http_port = free_port(), free_port(), free_port()
    init_data_dir(d, smp_port, password=PASSWORD)
    _, _, der = write_web_cert(d, rsa.generate_private_key(65537, 4096))
    _edit(
        d / "smpfast.ini",
        ("[INFORMATION]\n", "[INFORMATION]\noperator = <b>Op & Co</b>\noperator_country = de\n"
         "admin_email = admin@example.test\nwebsite = javascript:alert(1)\nhosting_type = virtual\n"),
        ("# source_code = https://...", "source_code = https://example.test/src"),
        (f"port = {smp_port}", f"port = {smp_port},{shared_port}"),
        ("# static_path = www", "static_path = www"),
        ("# http = 8000", f"http = {http_port}"),
        ("# https = 443", f"https = {shared_port}"),
        ("# cert = /etc/letsencrypt/live/your.domain/fullchain.pem", "cert = web.crt"),
        ("# key = /etc/letsencrypt/live/your.domain/privkey.pem", "key = web.key"),
    )
    server = ServerProcess(d)
    address = server.start()
    try:
        yield WebServerUnderTest(d, address, smp_port, shared_port, http_port, der)
    finally:
        server.stop()
    log = server.log()
    assert f"information page on HTTPS port {shared_port}, shared with SMP" in log
    assert f"information page on HTTP port {http_port}" in log


def _https(port: int, sni: str | None) -> tuple[http.client.HTTPConnection, ssl.SSLSocket]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the certificate is compared byte for byte instead
    ctx.set_alpn_protocols(["h2", "http/1.1"])  # what browsers offer
    tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=sni)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.sock = tls
    return conn, tls


def _request(conn: http.client.HTTPConnection, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    conn.request(method, path, headers={"Host": SNI})
    reply = conn.getresponse()
    return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()


def test_browser_on_the_shared_port_gets_the_page(web_server: WebServerUnderTest) -> None:
    conn, tls = _https(web_server.shared_port, SNI)
    try:
        assert tls.getpeercert(binary_form=True) == web_server.cert_der  # the web certificate
        assert tls.selected_alpn_protocol() == "http/1.1"
        status, headers, body = _request(conn, "GET", "/")
        assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
        page = body.decode()
        assert "Op &amp; Co" in page and "<b>Op" not in page  # INI text is escaped
        assert "&lt;b&gt;Op &amp; Co&lt;/b&gt; (DE)" in page
        assert 'href="javascript:' not in page  # only http(s) URLs become links
        assert '<a href="https://example.test/src"' in page
        assert 'href="mailto:admin@example.test"' in page
        assert "Virtual" in page
        # The address without the queue-creation password: the page is public.
        public_address = web_server.address.replace(f":{PASSWORD}@", "@")
        assert public_address != web_server.address and public_address in page
        assert PASSWORD not in page
        # Keep-alive: a second request on the same connection; HEAD has no body.
        status, headers, body = _request(conn, "HEAD", "/index.html")
        assert status == 200 and body == b"" and int(headers["content-length"]) == len(page.encode())
        status, _, _ = _request(conn, "GET", "/../smpfast.ini")
        assert status == 404
        status, _, _ = _request(conn, "GET", "/%2e%2e/smpfast.ini")
        assert status == 404
        status, headers, _ = _request(conn, "POST", "/")
        assert status == 405 and headers["allow"] == "GET, HEAD"
    finally:
        conn.close()


def test_plain_http_port_serves_the_same_page(web_server: WebServerUnderTest) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", web_server.http_port, timeout=10)
    try:
        status, _, body = _request(conn, "GET", "/")
    finally:
        conn.close()
    assert status == 200
    assert body == (web_server.directory / "www" / INDEX).read_bytes()


def test_smp_clients_on_the_shared_port_get_smp(web_server: WebServerUnderTest, trio_run) -> None:
    """No SNI: SMP, whatever the ALPN -- the reference's clients offer only http/1.1 to
    servers they reach on port 443, and they must get SMP there, not the page."""
    shared = web_server.address.replace(f":{web_server.smp_port}", f":{web_server.shared_port}")
    assert shared != web_server.address

    async def main() -> None:
        async with sc.connect(shared) as client:
            q = await client.create_queue(subscribe=False)
            await client.send(q.snd_id, b"over the shared port")
            msg = await client.get(q)
            assert msg is not None and client.decrypt_msg(q, msg).body == b"over the shared port"
        conn = await open_block_connection("127.0.0.1", web_server.shared_port, web_server.key_hash, alpn=("http/1.1",))
        try:
            assert conn.alpn == "http/1.1"
            with trio.fail_after(10):
                [hello] = await conn.receive_blocks()  # the SMP server hello, not HTTP
            assert len(hello) == BLOCK_SIZE
        finally:
            await conn.aclose()

    trio_run(main)


def test_smpfast_info_prints_fields_and_address(web_server: WebServerUnderTest) -> None:
    out = subprocess.run(
        smpfast_command("info", "--dir", str(web_server.directory)), capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"Server address: {web_server.address}"
    assert any(line.startswith("Operator:") and line.endswith("<b>Op & Co</b> (DE)") for line in lines)
    assert any(line.startswith("Source code:") and line.endswith("https://example.test/src") for line in lines)
    assert any(line.startswith("Administrator (email):") and "admin@example.test" in line for line in lines)
    assert lines[-1] == (
        f"Information page: {web_server.directory / 'www' / INDEX}, served on HTTP port "
        f"{web_server.http_port} and HTTPS port {web_server.shared_port}"
    )


def test_info_without_source_code(tmp_path: Path) -> None:
    d = tmp_path / "srv"
    address = init_data_dir(d, free_port())
    out = subprocess.run(smpfast_command("info", "--dir", str(d)), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        f"Server address: {address}",
        f"No public information: set [INFORMATION] source_code in {d.absolute() / 'smpfast.ini'} to publish it.",
    ]


# --- units ------------------------------------------------------------------------------------

FACTS = ServerFacts("smp://fp@h1,h2", 21, False, True, False, "0.0")


def test_page_without_information() -> None:
    page = render_page(None, FACTS)
    assert "has not published information" in page and "smp://fp@h1,h2" in page
    assert "after 21 days" in page and "<script" not in page


def test_information_rows_order_and_countries() -> None:
    info = InformationConfig(source_code="https://s", operator="Op", operator_country="FR", hosting="H",
                             hosting_country="NL", server_country="DE", usage_conditions="https://c")
    assert information_rows(info) == [
        ("Operator", "Op (FR)"), ("Usage conditions", "https://c"), ("Hosting provider", "H (NL)"),
        ("Server country", "DE"), ("Source code", "https://s"),
    ]


def test_static_site_stays_inside_its_directory(tmp_path: Path) -> None:
    root = tmp_path / "www"
    (root / "well-known").mkdir(parents=True)
    (root / INDEX).write_text("<p>index</p>")
    (root / "well-known" / "x.json").write_text("{}")
    (root / ".hidden").write_text("secret")
    (tmp_path / "outside.txt").write_text("secret")
    (root / "link.txt").symlink_to(tmp_path / "outside.txt")
    site = StaticSite(root)
    assert site.respond("GET", "/").body == b"<p>index</p>"
    assert site.respond("GET", "/?q=1").status == 200
    reply = site.respond("GET", "/.well-known/x.json")  # served from well-known/, as the reference
    assert reply.status == 200 and reply.content_type == "application/json"
    for target in ("/../outside.txt", "/%2E%2E/outside.txt", "/link.txt", "/.hidden", "/nothing", "x", "/\x00"):
        assert site.respond("GET", target).status == 404, target
    assert site.respond("DELETE", "/").status == 405


def test_https_certificate_must_be_4096_bit_rsa(tmp_path: Path) -> None:
    """As the reference (checkHTTPSCredentials): other keys stop start-up with one line."""
    cert, key, _ = write_web_cert(tmp_path, ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(WebError, match="must have a 4096-bit RSA key"):
        https_context(cert, key)
    with pytest.raises(WebError, match="cannot read"):
        https_context(tmp_path / "missing.crt", key)
