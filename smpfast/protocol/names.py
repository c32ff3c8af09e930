"""SMP v20 name resolution values: the name RSLV carries and the record RNAME returns, and
the sans-IO side of the HTTP resolver protocol a names server talks to.

- ``SimplexDomain``: a fully qualified name such as ``alice.simplex``, ``x.bob.testing`` or
  ``example.com``: ASCII letter/digit labels (inner single hyphens allowed, at most 63
  bytes each), at least two labels, at most 253 bytes, case-folded to lower case. Its wire
  form is the canonical text.
- ``NameRecord``: the JSON object of RNAME (twelve keys), encoded compactly in the
  reference's key order with its string escaping.

Layouts and rules: docs/protocol-v19-v20.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import quote

from .encoding import ParseError, Reader

MAX_NAME_BYTES = 253  # DNS full-name limit
MAX_LABEL_BYTES = 63  # DNS label limit

TLD_SIMPLEX = "simplex"
TLD_TESTING = "testing"
TLD_WEB = "web"  # any other last label: the whole name is the domain

# attoparsec Char8 isSpace: space and \t \n \v \f \r end the name token
_NAME_STOP = frozenset(b" \t\n\v\f\r")
_LABEL = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\Z")


@dataclass(frozen=True, slots=True)
class SimplexDomain:
    """A name to resolve, as its lower-case labels from left to right."""

    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        check_labels(self.labels)

    @property
    def full_name(self) -> str:
        """The canonical name (what goes on the wire and to the resolver)."""
        return ".".join(self.labels)

    @property
    def tld(self) -> str:
        last = self.labels[-1]
        return last if last in (TLD_SIMPLEX, TLD_TESTING) else TLD_WEB

    def encode(self) -> bytes:
        return self.full_name.encode("ascii")

    def __str__(self) -> str:
        return self.full_name


def check_labels(labels: tuple[str, ...]) -> None:
    """Raise ParseError unless ``labels`` make a valid lower-case name."""
    if len(labels) < 2:
        raise ParseError("a name needs a label and a TLD")
    for label in labels:
        if len(label) > MAX_LABEL_BYTES or not _LABEL.match(label) or label != label.lower():
            raise ParseError("bad name label")
    if sum(map(len, labels)) + len(labels) - 1 > MAX_NAME_BYTES:
        raise ParseError("name longer than 253 bytes")


def read_domain(r: Reader) -> SimplexDomain:
    """The name token at the reader (up to whitespace or the end), validated and lower-cased."""
    data, start = r.data, r.pos
    end = start
    while end < len(data) and data[end] not in _NAME_STOP and end - start <= MAX_NAME_BYTES:
        end += 1
    if end == start:
        raise ParseError("expected a name")
    if end - start > MAX_NAME_BYTES:
        raise ParseError("name longer than 253 bytes")
    token = data[start:end]
    if not token.isascii():  # labels are ASCII letters and digits only
        raise ParseError("bad name label")
    r.pos = end
    return SimplexDomain(tuple(token.decode("ascii").lower().split(".")))


def parse_domain(text: str | bytes) -> SimplexDomain:
    """A whole string as a name (no trailing bytes). Raises ParseError."""
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    r = Reader(raw)
    d = read_domain(r)
    r.end()
    return d


# ---------------------------------------------------------------------------------------
# NameRecord (the RNAME payload)

_TEXT_FIELDS = ("name", "nickname", "website", "location")
_LINK_FIELDS = ("simplexContact", "simplexChannel")
_COIN_FIELDS = ("eth", "btc", "xmr", "dot")
_ID_FIELDS = ("owner", "resolver")


@dataclass(frozen=True, slots=True)
class NameRecord:
    """A resolved name. Unset text fields are "", unset link lists empty, unset coin
    addresses None. ``owner``/``resolver`` are 0x-hex addresses kept as text."""

    name: str
    nickname: str = ""
    website: str = ""
    location: str = ""
    simplex_contact: tuple[str, ...] = ()
    simplex_channel: tuple[str, ...] = ()
    eth: str | None = None
    btc: str | None = None
    xmr: str | None = None
    dot: str | None = None
    owner: str = ""
    resolver: str = ""

    def to_json(self) -> bytes:
        """Compact JSON, keys in the reference's order, coin fields null when unset."""
        s = _json_string
        parts = [
            '"name":' + s(self.name),
            '"nickname":' + s(self.nickname),
            '"website":' + s(self.website),
            '"location":' + s(self.location),
            '"simplexContact":[' + ",".join(map(s, self.simplex_contact)) + "]",
            '"simplexChannel":[' + ",".join(map(s, self.simplex_channel)) + "]",
        ]
        for key, value in zip(_COIN_FIELDS, (self.eth, self.btc, self.xmr, self.dot)):
            parts.append(f'"{key}":' + ("null" if value is None else s(value)))
        parts.append('"owner":' + s(self.owner))
        parts.append('"resolver":' + s(self.resolver))
        return ("{" + ",".join(parts) + "}").encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> "NameRecord":
        """Parse a record (from a resolver or an RNAME). Unknown keys are ignored; coin keys
        may be absent or null; every other key is required. Raises ParseError."""
        obj = _json_object(raw)

        def text(key: str) -> str:
            v = obj.get(key, _MISSING)
            if not isinstance(v, str):
                raise ParseError(f"NameRecord: {key} must be a string")
            return v

        def links(key: str) -> tuple[str, ...]:
            v = obj.get(key, _MISSING)
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ParseError(f"NameRecord: {key} must be an array of strings")
            return tuple(v)

        def coin(key: str) -> str | None:
            v = obj.get(key)
            if v is not None and not isinstance(v, str):
                raise ParseError(f"NameRecord: {key} must be a string or null")
            return v

        return cls(
            text("name"), text("nickname"), text("website"), text("location"),
            links("simplexContact"), links("simplexChannel"),
            coin("eth"), coin("btc"), coin("xmr"), coin("dot"),
            text("owner"), text("resolver"),
        )


_MISSING = object()


def _reject_constant(name: str) -> None:
    raise ValueError(f"not JSON: {name}")


def _no_lone_surrogates(v: object) -> object:
    # JSON text may escape half a surrogate pair; UTF-8 cannot carry it, so it becomes U+FFFD
    if isinstance(v, str):
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in v) if _has_surrogate(v) else v
    if isinstance(v, list):
        return [_no_lone_surrogates(x) for x in v]
    if isinstance(v, dict):
        return {_no_lone_surrogates(k): _no_lone_surrogates(x) for k, x in v.items()}
    return v


def _has_surrogate(s: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in s)


def _json_object(raw: bytes) -> dict:
    try:
        obj = json.loads(bytes(raw).decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise ParseError("bad NameRecord JSON") from e
    if not isinstance(obj, dict):
        raise ParseError("NameRecord is not a JSON object")
    return _no_lone_surrogates(obj)  # type: ignore[return-value]


_JSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _json_string(s: str) -> str:
    """A JSON string as aeson writes it: only '"', '\\' and control characters escaped
    (\\n \\r \\t by name, the rest as lower-case \\u00XX); everything else as is (UTF-8)."""
    out = []
    for c in s:
        e = _JSON_ESCAPES.get(c)
        if e is not None:
            out.append(e)
        elif c < " ":
            out.append("\\u%04x" % ord(c))
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


# ---------------------------------------------------------------------------------------
# The HTTP resolver protocol (sans-IO): request paths and how answers map to ERR NAME

HEALTH_PATH = "/health"
# ERR NAME RESOLVER details the reference sends (the text after "RESOLVER ")
DETAIL_TIMEOUT = "timeout"
DETAIL_TRANSPORT = "transport failure"
DETAIL_TOO_LARGE = "response too large"
DETAIL_INVALID = "invalid response"
DETAIL_INTERNAL = "resolver error"  # an unexpected failure inside the resolver client


def resolve_path(domain: SimplexDomain) -> str:
    """``/resolve/<name>``, the name percent-encoded except RFC 3986 unreserved characters
    (a canonical name never needs escaping; this only keeps the rule explicit)."""
    return "/resolve/" + quote(domain.full_name, safe="")


def http_status_detail(status: int) -> str | None:
    """For an HTTP status of 400 or more: None when it means NOT_FOUND (404, 400), else
    the RESOLVER detail (``HTTP <code>``)."""
    if status in (400, 404):
        return None
    return f"HTTP {status}"
