"""SMP server addresses and queue URIs (the reference's StrEncoding), and the binary
ProtocolServer used inside PRXY.

- server address: ``smp://<keyHash b64url>[:<basicAuth>]@<host>[,<host>...][:<port>]``
- queue URI: ``<server address without auth>/<senderId b64url>#/?v=<range>&dh=<X25519 DER
  b64url>[&q=m|c][&k=s]``; the parser also takes the older forms (``#<dhKey>`` with no
  query, a dh key before ``?``, and the ``srv=`` parameter with extra hosts).

Hosts are kept as text (Latin-1 ``str``), in the form the reference prints them back:
dotted IPv4, IPv6 text, ``<name>.onion`` or a domain name.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

from .encoding import Reader, b64url, b64url_decode, key_algorithm
from .errors import ParseError
from .versions import VersionRange

DEFAULT_PORT = 5223  # the port of an address that names none


class QueueMode(enum.Enum):
    MESSAGING = "M"  # 1-time invitation queue: the sender may secure it (SKEY/LKEY)
    CONTACT = "C"  # contact address queue


@dataclass(frozen=True, slots=True)
class SMPServer:
    """A relay: non-empty ``hosts``, ``port`` text ("" = default) and the 32-byte
    ``key_hash`` (SHA-256 of the identity certificate). Hashable."""

    hosts: tuple[str, ...]
    port: str
    key_hash: bytes

    def __str__(self) -> str:
        return format_server(self)


# ---- hosts (TransportHost) ----

_DOMAIN_STOP = frozenset(":#,;/ \n\r\t[]")  # brackets excluded since 7.x (#1807)
_HEX = frozenset("0123456789abcdefABCDEF")
_LOWER_DIGIT = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


def _digits(s: str, pos: int) -> int:
    end = pos
    while end < len(s) and "0" <= s[end] <= "9":
        end += 1
    return end


def _ipv4(s: str, pos: int) -> tuple[str, int] | None:
    parts = []
    for _ in range(3):
        end = _digits(s, pos)
        if end == pos or end >= len(s) or s[end] != ".":
            return None
        n = int(s[pos:end])
        if n > 255:
            return None
        parts.append(n)
        pos = end + 1
    end = _digits(s, pos)
    if end == pos:
        return None
    parts.append(int(s[pos:end]) % 256)  # the last number is read as a Word8 (wraps)
    return ".".join(map(str, parts)), end


def _show_ipv6(addr: ipaddress.IPv6Address) -> str:
    # the reference prints IPv4-mapped and IPv4-compatible addresses with a dotted tail
    n = int(addr)
    hi, lo = n >> 32, n & 0xFFFFFFFF
    if hi == 0xFFFF:
        return "::ffff:" + str(ipaddress.IPv4Address(lo))
    if hi == 0 and lo >= 0x10000:
        return "::" + str(ipaddress.IPv4Address(lo))
    return addr.compressed


def _ipv6(s: str, pos: int) -> tuple[str, int] | None:
    if pos < len(s) and s[pos] == "[":
        end = s.find("]", pos + 1)
        if end <= pos + 1:
            return None
        text, after = s[pos + 1 : end], end + 1
    else:
        end = pos
        while end < len(s) and (s[end] in _HEX or s[end] == ":"):
            end += 1
        if end == pos:
            return None
        text, after = s[pos:end], end
    if "%" in text:
        return None
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    return _show_ipv6(addr), after


def _onion(s: str, pos: int) -> tuple[str, int] | None:
    end = pos
    while end < len(s) and s[end] in _LOWER_DIGIT:
        end += 1
    if not s.startswith(".onion", end):
        return None
    return s[pos : end + 6], end + 6


def _domain(s: str, pos: int) -> tuple[str, int] | None:
    end = pos
    while end < len(s) and s[end] not in _DOMAIN_STOP:
        end += 1
    if end == pos or s[pos:end].endswith(".onion"):
        return None
    return s[pos:end], end


def host_prefix(s: str, pos: int = 0) -> tuple[str, int]:
    """Parse one host at ``pos`` like the reference (first matching form wins: IPv4, IPv6,
    onion, domain). Returns (printed form, end position). Raises ParseError."""
    for alt in (_ipv4, _ipv6, _onion, _domain):
        r = alt(s, pos)
        if r is not None:
            return r
    raise ParseError("bad host")


def parse_host(text: str) -> str:
    """A whole string as one host (the binary PRXY form); returns its printed form."""
    host, end = host_prefix(text, 0)
    if end != len(text):
        raise ParseError("trailing characters after host")
    return host


# ---- binary ProtocolServer (PRXY) ----


def encode_server_binary(srv: SMPServer) -> bytes:
    """NonEmpty(host shortString) ‖ port shortString ‖ keyHash shortString."""
    if not 1 <= len(srv.hosts) <= 255:
        raise ValueError("a server needs 1..255 hosts")
    out = [bytes((len(srv.hosts),))]
    for h in srv.hosts:
        out.append(_short(h.encode("latin-1")))
    out.append(_short(srv.port.encode("latin-1")))
    out.append(_short(srv.key_hash))
    return b"".join(out)


def _short(b: bytes) -> bytes:
    if len(b) > 255:
        raise ValueError("short string longer than 255 bytes")
    return bytes((len(b),)) + b


def _read_host(r: Reader) -> str:
    return parse_host(r.short_string().decode("latin-1"))


def read_server(r: Reader) -> SMPServer:
    hosts = tuple(r.short_list(_read_host, non_empty=True))
    port = r.short_string().decode("latin-1")
    return SMPServer(hosts, port, r.short_string())


# ---- text forms ----


def _b64_prefix(s: str, pos: int) -> tuple[bytes, int]:
    """base64urlP: ``[A-Za-z0-9_-]+`` then ``=*``, decoded."""
    end = pos
    while end < len(s) and (s[end].isascii() and (s[end].isalnum() or s[end] in "-_")):
        end += 1
    if end == pos:
        raise ParseError("expected base64url")
    while end < len(s) and s[end] == "=":
        end += 1
    return b64url_decode(s[pos:end]), end


_BASIC_AUTH_TEXT_OK = frozenset(
    chr(c) for c in range(256)
    if (0x21 <= c <= 0x7E and c not in b"@:/") or (0xA1 <= c <= 0xFF and c != 0xAD)
)


def _server_prefix(s: str, pos: int = 0) -> tuple[SMPServer, bytes | None, int]:
    end = s.find("://", pos)
    if end < 0 or s[pos:end] != "smp":
        raise ParseError("not an smp:// address")
    key_hash, pos = _b64_prefix(s, end + 3)
    auth = None
    if pos < len(s) and s[pos] == ":":
        end = s.find("@", pos + 1)
        if end < 0:
            end = len(s)
        text = s[pos + 1 : end]
        if not text or not all(c in _BASIC_AUTH_TEXT_OK for c in text):
            raise ParseError("invalid BasicAuth")
        auth = text.encode("latin-1")
        pos = end
    if pos >= len(s) or s[pos] != "@":
        raise ParseError("expected '@'")
    pos += 1
    hosts = []
    while True:
        h, pos = host_prefix(s, pos)
        hosts.append(h)
        if pos < len(s) and s[pos] == ",":
            pos += 1
            continue
        break
    port = ""
    if pos < len(s) and s[pos] == ":":
        end = _digits(s, pos + 1)
        if end > pos + 1:
            port = str(int(s[pos + 1 : end]))
            pos = end
    return SMPServer(tuple(hosts), port, key_hash), auth, pos


def parse_server_address(text: str) -> tuple[SMPServer, bytes | None]:
    """``smp://fp[:auth]@hosts[:port]`` → (server, basic auth or None). Raises ParseError."""
    srv, auth, end = _server_prefix(text)
    if end != len(text):
        raise ParseError("trailing characters in server address")
    return srv, auth


def format_server(srv: SMPServer, basic_auth: bytes | None = None, hosts: tuple[str, ...] | None = None) -> str:
    """The address text; ``hosts`` overrides the host list (the legacy one-host form)."""
    out = "smp://" + b64url(srv.key_hash)
    if basic_auth is not None:
        out += ":" + basic_auth.decode("latin-1")
    out += "@" + ",".join(srv.hosts if hosts is None else hosts)
    if srv.port:
        out += ":" + srv.port
    return out


# ---- queue URI ----

# SMP *client* versions (e2e envelope), not relay versions
SRV_HOSTNAMES_CLIENT_VERSION = 2
SND_AUTH_KEY_CLIENT_VERSION = 3
SHORT_LINKS_CLIENT_VERSION = 4

_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


@dataclass(frozen=True, slots=True)
class SMPQueueUri:
    """An SMP queue address given out of band. ``dh_key`` is the recipient's X25519 key
    (SPKI DER); ``client_vrange`` the SMP client (e2e) version range."""

    server: SMPServer
    sender_id: bytes
    dh_key: bytes
    client_vrange: VersionRange
    queue_mode: QueueMode | None = None

    def __str__(self) -> str:
        return format_queue_uri(self)


def _url_encode(b: bytes) -> str:
    return "".join(chr(c) if c in _UNRESERVED else "%%%02X" % c for c in b)


def _url_decode(s: str) -> bytes:
    raw = s.encode("latin-1")
    out = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == 0x2B:  # '+' is a space in query strings
            out.append(0x20)
        elif c == 0x25 and i + 2 < len(raw) + 0 and _is_hex2(raw[i + 1 : i + 3]):
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 2
        else:
            out.append(c)
        i += 1
    return bytes(out)


def _is_hex2(b: bytes) -> bool:
    return len(b) == 2 and all(c in b"0123456789abcdefABCDEF" for c in b)


def _parse_query(q: str) -> list[tuple[bytes, bytes]]:
    if q.startswith("?"):
        q = q[1:]
    out = []
    for part in q.replace(";", "&").split("&") if q else []:
        k, sep, v = part.partition("=")
        out.append((_url_decode(k), _url_decode(v)))
    return out


def _param(params: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for k, v in params:
        if k == name:
            return v
    return None


def _vrange_str(vr: VersionRange) -> str:
    return str(vr.min) if vr.min == vr.max else f"{vr.min}-{vr.max}"


def _parse_vrange(s: str) -> VersionRange:
    lo, sep, hi = s.partition("-")
    if not lo.isdigit() or not lo.isascii() or (sep and (not hi.isdigit() or not hi.isascii())):
        raise ParseError("bad version range")
    a = int(lo)
    b = int(hi) if sep else a
    if a > b or b > 65535:
        raise ParseError("bad version range")
    return VersionRange(a, b)


def _x25519_text(s: str) -> bytes:
    der = b64url_decode(s)
    if key_algorithm(der) != "x25519":
        raise ParseError("not an X25519 key")
    return der


def format_queue_uri(q: SMPQueueUri) -> str:
    vr = q.client_vrange
    params = [("v", _vrange_str(vr).encode()), ("dh", b64url(q.dh_key).encode())]
    if q.queue_mode is QueueMode.MESSAGING:
        params.append(("q", b"m"))
    elif q.queue_mode is QueueMode.CONTACT:
        params.append(("q", b"c"))
    if q.queue_mode is QueueMode.MESSAGING and vr.min < SHORT_LINKS_CLIENT_VERSION:
        params.append(("k", b"s"))
    if vr.min >= SRV_HOSTNAMES_CLIENT_VERSION:
        srv = format_server(q.server)
    else:  # legacy: one host in the address, the others in srv=
        srv = format_server(q.server, hosts=q.server.hosts[:1])
        if len(q.server.hosts) > 1:
            params.append(("srv", ",".join(q.server.hosts[1:]).encode("latin-1")))
    query = "&".join(k + "=" + _url_encode(v) for k, v in params)
    return srv + "/" + b64url(q.sender_id) + "#/?" + query


def parse_queue_uri(text: str) -> SMPQueueUri:
    """Parse an SMP queue URI (current and older forms). Raises ParseError."""
    try:
        return _parse_queue_uri(text)
    except ParseError:
        raise
    except (ValueError, IndexError) as e:
        raise ParseError(str(e)) from e


def _parse_queue_uri(s: str) -> SMPQueueUri:
    srv, auth, pos = _server_prefix(s)
    if auth is not None:
        raise ParseError("ProtocolServer with basic auth not allowed")
    if pos >= len(s) or s[pos] != "/":
        raise ParseError("expected '/'")
    sender_id, pos = _b64_prefix(s, pos + 1)
    if pos < len(s) and s[pos] == "/":
        pos += 1
    if pos >= len(s) or s[pos] != "#":
        raise ParseError("expected '#'")
    pos += 1
    r = _versioned(s, pos)
    if r is None:  # unversioned: a dh key and nothing else
        dh, end = _b64_prefix(s, pos)
        if end != len(s) or key_algorithm(dh) != "x25519":
            raise ParseError("bad queue URI")
        return SMPQueueUri(srv, sender_id, dh, VersionRange(1, 1), None)
    vr, extra_hosts, dh, mode = r
    if extra_hosts:
        srv = SMPServer(srv.hosts + tuple(extra_hosts), srv.port, srv.key_hash)
    return SMPQueueUri(srv, sender_id, dh, vr, mode)


def _versioned(s: str, pos: int):
    dh = None
    try:
        key, end = _b64_prefix(s, pos)
        if key_algorithm(key) == "x25519":
            dh, pos = key, end
    except ParseError:
        pass
    if pos < len(s) and s[pos] == "/":
        pos += 1
    if pos >= len(s) or s[pos] != "?":
        return None
    end = pos + 1
    while end < len(s) and s[end] not in " \n":
        end += 1
    if end != len(s):
        raise ParseError("trailing characters in queue URI")
    params = _parse_query(s[pos + 1 : end])
    try:
        v = _param(params, b"v")
        if v is None:
            return None
        vr = _parse_vrange(v.decode("latin-1"))
        if dh is None:
            d = _param(params, b"dh")
            if d is None:
                return None
            dh = _x25519_text(d.decode("latin-1"))
        hosts: list[str] = []
        srv_p = _param(params, b"srv")
        if srv_p:
            text = srv_p.decode("latin-1")
            p = 0
            while True:
                h, p = host_prefix(text, p)
                hosts.append(h)
                if p < len(text) and text[p] == ",":
                    p += 1
                    continue
                break
            if p != len(text):
                return None
    except ParseError:
        return None
    q = _param(params, b"q")
    if q == b"m":
        mode = QueueMode.MESSAGING
    elif q == b"c":
        mode = QueueMode.CONTACT
    elif _param(params, b"k") == b"s":
        mode = QueueMode.MESSAGING
    else:
        mode = None
    return vr, hosts, dh, mode
