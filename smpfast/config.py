"""``smpfast.ini``: parsing into a typed, frozen :class:`Config`, and the text ``init`` writes.

Sections and keys follow the reference server's ``smp-server.ini`` wherever the meaning is the
same, so an operator's habits carry over.  Differences, on purpose:

* Unknown sections and keys stop start-up (the reference silently ignores them), so a typo
  never turns a setting off.  A few keys the reference's ``init`` writes are accepted when
  they hold the only value that is true of smpfast anyway (see ``_COMPAT``); any other value
  of them is an error, never silently ignored.
* ``[TRANSPORT] bind`` (ours): the listen address, loopback unless configured.
* ``[STORE]`` (ours): the LMDB store.
* ``[LIMITS]`` (ours): connection cap, handshake timeouts and the per-connection answer
  queue bound. The reference hard-codes its equivalents (TLS setup 60 s, SMP handshake
  120 s, send queue 128) and has no connection cap; the defaults here are those values.
* Absent ``[INACTIVE_CLIENTS] disconnect`` means on (what the reference's ``init`` writes; the
  reference code itself reads an absent key as off).
"""

from __future__ import annotations

import configparser
import urllib.parse
import difflib
import ipaddress
import os
import re
import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from smpfast.credentials import CredentialPaths
from smpfast.protocol.address import DEFAULT_PORT
from smpfast.server.admin import DEFAULT_CONTROL_PORT, DEFAULT_DAILY_BLOCK_QUOTA
from smpfast.server.broker import EXPIRE_ON_SEND
from smpfast.server.connection import DEFAULT_RESOLVER_CONCURRENCY
from smpfast.server.resolver import ResolverSettings
from smpfast.store.lmdb import DEFAULT_MAP_SIZE
from smpfast.transport.hosts import HOST_MODES, SOCKS_MODES
from smpfast.transport.socks import SocksProxy, parse_socks_proxy

INI_FILE = "smpfast.ini"
DEFAULT_BIND = "127.0.0.1"
DEFAULT_STORE_DIR = "store"
MAX_BASIC_AUTH_LEN = 255  # encoded with a one-byte length on the wire
HOSTING_TYPES = ("virtual", "dedicated", "colocation", "owned")
DURABILITY_MODES = ("fsync", "none")
NO_HOST = "<hostnames>"  # printed in the address when [TRANSPORT] host is not set


class ConfigError(Exception):
    """The INI file is missing, unreadable, or has an unknown or invalid setting."""

    def __init__(self, message: str, section: str | None = None, key: str | None = None):
        where = f"[{section}]" if section else ""
        if key:
            where += f" {key}"
        super().__init__(f"{where}: {message}" if where else message)
        self.section = section
        self.key = key


# --- typed sections ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InformationConfig:
    """Public server information; published only when ``source_code`` is set (AGPLv3)."""

    source_code: str
    usage_conditions: str | None = None
    condition_amendments: str | None = None
    server_country: str | None = None
    operator: str | None = None
    operator_country: str | None = None
    website: str | None = None
    admin_simplex: str | None = None
    admin_email: str | None = None
    admin_pgp: str | None = None
    admin_pgp_fingerprint: str | None = None
    complaints_simplex: str | None = None
    complaints_email: str | None = None
    complaints_pgp: str | None = None
    complaints_pgp_fingerprint: str | None = None
    hosting: str | None = None
    hosting_country: str | None = None
    hosting_type: str | None = None


@dataclass(frozen=True)
class StoreLogConfig:
    expire_messages_days: int = 21
    expire_messages_on_start: bool = True
    expire_messages_on_send: bool = EXPIRE_ON_SEND  # the reference's default when absent; init writes off
    expire_ntfs_hours: int = 24
    log_stats: bool = False
    prometheus_interval: int | None = None  # seconds between writes of the metrics text file

    @property
    def message_ttl_seconds(self) -> int:
        return self.expire_messages_days * 86400

    @property
    def notification_ttl_seconds(self) -> int:
        return self.expire_ntfs_hours * 3600


@dataclass(frozen=True)
class AuthConfig:
    new_queues: bool = True
    create_password: str | None = None
    control_port_admin_password: str | None = None
    control_port_user_password: str | None = None
    daily_block_queue_quota: int = DEFAULT_DAILY_BLOCK_QUOTA  # 0: no limit; negative: no blocking


@dataclass(frozen=True)
class TransportConfig:
    host: tuple[str, ...] = ()  # for the printed address only
    port: tuple[int, ...] = (DEFAULT_PORT,)
    bind: str = DEFAULT_BIND
    log_tls_errors: bool = False
    control_port: int | None = None  # the control port, always on 127.0.0.1; None: off
    # Ask clients for TLS certificates, as services (v16) answer (the reference: on by
    # default, and `init` does not write it).
    accept_service_credentials: bool = True
    # Worker processes serving the ports together (SO_REUSEPORT) on one store; None: one
    # per core. 1: a single process, as before workers existed.
    workers: int | None = None

    @property
    def worker_count(self) -> int:
        return default_workers() if self.workers is None else self.workers


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class InactiveClientsConfig:
    disconnect: bool = True
    ttl: int = 21600
    check_interval: int = 3600


@dataclass(frozen=True)
class StoreConfig:
    path: Path  # resolved against the config directory
    map_size: int = DEFAULT_MAP_SIZE
    map_size_max: int | None = None  # grow a full map up to this size; None: never grow
    durability: str = "fsync"
    commit_interval_ms: int = 2


DEFAULT_MAX_CONNECTIONS = 10000


@dataclass(frozen=True)
class LimitsConfig:
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # handshaking ones included
    tls_handshake_timeout: int = 60  # seconds, reference tlsSetupTimeout
    smp_handshake_timeout: int = 120  # seconds, reference smpHandshakeTimeout
    outbox_limit: int = 128  # answer batches per connection, reference tbqSize
    # Ours, the proxy role's outbound links (the reference has no limit; its timeouts are
    # these defaults): relay connections open at once, and seconds for one to connect
    # (TCP, SOCKS, TLS, SMP handshake) and for a relay to answer a forwarded command.
    proxy_relay_connections: int = 10000
    proxy_connect_timeout: int = 45
    proxy_request_timeout: int = 30


DEFAULT_CLIENT_CONCURRENCY = 32  # the reference's defaultProxyClientConcurrency


@dataclass(frozen=True)
class ProxyConfig:
    """The SMP proxy role's outbound links to destination relays (reference names)."""

    socks_proxy: SocksProxy | None = None  # None: direct connections only
    socks_mode: str = "onion"  # onion: SOCKS for .onion hosts only; always: for every host
    host_mode: str = "public"  # which host of a relay with several to prefer
    required_host_mode: bool = False  # no host of that kind: PROXY BROKER HOST
    own_server_domains: tuple[str, ...] = ()  # counted apart in the proxy statistics
    client_concurrency: int = DEFAULT_CLIENT_CONCURRENCY  # proxied commands in flight per client


DEFAULT_RESOLVER_TIMEOUT_MS = 3000  # the reference's [NAMES] defaults and bounds
RESOLVER_TIMEOUT_MS_RANGE = (100, 60000)
DEFAULT_RESOLVER_MAX_RESPONSE_BYTES = 16000
RESOLVER_MAX_RESPONSE_BYTES_RANGE = (1024, 16000)
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "0.0.0.0")  # where http may carry resolver_auth


@dataclass(frozen=True)
class NamesConfig:
    """The reference's ``[NAMES]`` (SMP v20 name resolution): an HTTP resolver answering
    RSLV. Off: RSLV answers ERR NAME NO_RESOLVER."""

    enable: bool = False
    resolver_endpoint: str | None = None  # validated, trailing "/" removed
    resolver_auth: str | None = field(default=None, repr=False)  # the Authorization header value
    resolver_timeout_ms: int = DEFAULT_RESOLVER_TIMEOUT_MS
    resolver_max_response_bytes: int = DEFAULT_RESOLVER_MAX_RESPONSE_BYTES
    resolver_concurrency: int = DEFAULT_RESOLVER_CONCURRENCY  # resolutions in flight per connection

    def resolver_settings(self) -> ResolverSettings | None:
        if not self.enable or self.resolver_endpoint is None:
            return None
        return ResolverSettings(
            endpoint=self.resolver_endpoint,
            timeout=self.resolver_timeout_ms / 1000.0,
            max_response_bytes=self.resolver_max_response_bytes,
            authorization=self.resolver_auth,
        )


@dataclass(frozen=True)
class PrometheusConfig:
    """Ours: Prometheus ``/metrics`` over HTTP (the reference only writes a text file)."""

    port: int | None = None  # None: no endpoint
    bind: str = DEFAULT_BIND


LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class LogConfig:
    stats_interval: int = 3600  # seconds between one-line stats summaries; 0: none
    level: str = "info"  # one of LOG_LEVELS
    format: str = "text"  # one of LOG_FORMATS: json is one object per line


DEFAULT_WEB_DIR = "www"


@dataclass(frozen=True)
class WebConfig:
    """The reference's ``[WEB]``: a generated information page in ``static_path``, served
    over plain HTTP on ``http``, over HTTPS on ``https`` with ``cert``/``key`` (on an SMP port
    too: then browsers, which send SNI, get the page and SMP clients, which do not, SMP)."""

    static_path: Path  # resolved against the config directory
    http: int | None = None
    https: int | None = None
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True)
class Config:
    config_dir: Path
    ini_path: Path
    files: CredentialPaths
    information: InformationConfig | None
    store_log: StoreLogConfig
    auth: AuthConfig
    transport: TransportConfig
    inactive_clients: InactiveClientsConfig
    store: StoreConfig
    limits: LimitsConfig = LimitsConfig()
    prometheus: PrometheusConfig = PrometheusConfig()
    log: LogConfig = LogConfig()
    proxy: ProxyConfig = ProxyConfig()
    names: NamesConfig = NamesConfig()
    web: WebConfig | None = None  # None: no [WEB] static_path, no page

    def address(self, fingerprint: str) -> str:
        """``smp://<fingerprint>[:<password>]@<hosts>[:<port>]`` for this configuration."""
        return server_address(
            fingerprint, self.transport.host, self.transport.port, self.auth.create_password
        )


# --- value parsers (raise ValueError with a message for the operator) -------------------------


def parse_on_off(value: str) -> bool:
    if value == "on":
        return True
    if value == "off":
        return False
    raise ValueError(f"must be on or off, not {value!r}")


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        if not re.fullmatch(r"[0-9]+", value):
            raise ValueError(f"must be a whole number, not {value!r}")
        n = int(value)
        if not low <= n <= high:
            raise ValueError(f"must be between {low} and {high}, not {n}")
        return n

    return parse


def _int_signed(value: str) -> int:
    if not re.fullmatch(r"-?[0-9]+", value):
        raise ValueError(f"must be a whole number, not {value!r}")
    return int(value)


def validate_basic_auth(value: str) -> str:
    """Server password rules: printable ASCII without space, '@', ':' and '/'."""
    if not value:
        raise ValueError("password must not be empty")
    if len(value) > MAX_BASIC_AUTH_LEN:
        raise ValueError(f"password must be at most {MAX_BASIC_AUTH_LEN} characters")
    for ch in value:
        if not ("!" <= ch <= "~") or ch in "@:/":
            raise ValueError(
                f"invalid character {ch!r} in password (printable ASCII only, "
                "no whitespace, '@', ':' or '/')"
            )
    return value


def _text(value: str) -> str:
    if not value:
        raise ValueError("must not be empty (comment the line out to leave it unset)")
    return value


def _country(value: str) -> str:
    if len(value) == 2 and value.isascii() and value.isalpha():
        return value.upper()
    raise ValueError(f"must be an ISO 3166 two-letter country code, not {value!r}")


def _hosting_type(value: str) -> str:
    if value in HOSTING_TYPES:
        return value
    raise ValueError(f"must be one of {', '.join(HOSTING_TYPES)}, not {value!r}")


_HOST_FORBIDDEN = set(":#,;/@ \t\r\n")


def parse_hosts(value: str) -> tuple[str, ...]:
    """Comma-separated host names or IP addresses (IPv6 with or without brackets)."""
    hosts = []
    for part in value.split(","):
        h = part.strip()
        if not h:
            raise ValueError(f"empty host name in {value!r}")
        bare = h[1:-1] if h.startswith("[") and h.endswith("]") else h
        try:
            ipaddress.ip_address(bare)
        except ValueError:
            if _HOST_FORBIDDEN & set(h):
                raise ValueError(f"invalid host {h!r}") from None
        hosts.append(h)
    return tuple(hosts)


def parse_ports(value: str) -> tuple[int, ...]:
    """Comma-separated TCP ports, each served."""
    port = _int_range(1, 65535)
    ports = tuple(port(p.strip()) for p in value.split(","))
    if len(set(ports)) != len(ports):
        raise ValueError(f"port listed twice in {value!r}")
    return ports


def _bind(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"must be an IP address such as 127.0.0.1, 0.0.0.0 or ::, not {value!r}") from None
    return value


_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(value: str) -> int:
    """Bytes, or a number with a K/M/G/T suffix (powers of 1024)."""
    m = re.fullmatch(r"([0-9]+)\s*([kKmMgGtT]?)", value)
    if not m:
        raise ValueError(f"must be a size in bytes or with a K, M, G or T suffix, not {value!r}")
    size = int(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]
    if size < 1024**2:
        raise ValueError(f"must be at least 1M, not {value!r}")
    return size


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value in allowed:
            return value
        raise ValueError(f"must be one of {', '.join(allowed)}, not {value!r}")

    return parse


def _not_yet(parse: Callable[[str], Any], supported: Any, why: str) -> Callable[[str], Any]:
    """A reference key smpfast accepts only with the value that describes what it does."""

    def check(value: str) -> Any:
        parsed = parse(value)
        if parsed != supported:
            raise ValueError(f"{value!r} is not supported: {why}")
        return parsed

    return check


def _socks_proxy(value: str) -> SocksProxy:
    return parse_socks_proxy(value)


def _domains(value: str) -> tuple[str, ...]:
    """Space-separated domain suffixes (the reference splits on white space)."""
    out = tuple(value.split())
    for d in out:
        if _HOST_FORBIDDEN & set(d):
            raise ValueError(f"invalid domain {d!r}")
    return out


def parse_resolver_auth(value: str) -> str:
    """``bearer <token>`` or ``basic <user>:<password>`` (scheme in any case, two words, as
    the reference) as the Authorization header's value."""
    words = value.split()
    if len(words) == 2 and words[0].lower() == "bearer":
        return f"Bearer {words[1]}"
    if len(words) == 2 and words[0].lower() == "basic":
        user, colon, password = words[1].partition(":")
        if not user or not colon:
            raise ValueError("basic auth expects user:password")
        return "Basic " + base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
    raise ValueError("expected `bearer <token>` or `basic <user>:<password>`")


def validate_resolver_endpoint(url: str, with_auth: bool) -> str:
    """The reference's check of ``resolver_endpoint``: an absolute http(s) URL with a host,
    no ``user:pass@``, plain http with resolver_auth only to a loopback host; returned
    without trailing slashes (``/resolve/<name>`` and ``/health`` are appended)."""
    if not url or any(c.isspace() for c in url) or "#" in url:
        raise ValueError(f"not an absolute URL: {url!r}")
    parts = urllib.parse.urlsplit(url)
    if url.partition(":")[0] not in ("http", "https"):  # as written: the reference's check is exact
        raise ValueError("scheme must be http or https")
    if not url.startswith(parts.scheme + "://"):
        raise ValueError("missing host")
    if "@" in parts.netloc:
        raise ValueError("userinfo (user:pass@) not allowed; put credentials in resolver_auth")
    netloc = parts.netloc  # the host as written (an IPv6 literal with its brackets), then :port
    if netloc.startswith("["):
        host = netloc[: netloc.find("]") + 1] if "]" in netloc else netloc
    else:
        host = netloc.rpartition(":")[0] if ":" in netloc else netloc
    if not host:
        raise ValueError("empty host")
    try:
        parts.port  # a bad port raises here
    except ValueError:
        raise ValueError(f"not an absolute URL: {url!r}") from None
    if parts.scheme == "http" and with_auth and host not in LOOPBACK_HOSTS:
        raise ValueError(
            "http with resolver_auth on a non-loopback host is not allowed (the Authorization "
            "header would travel in cleartext); use https, or drop resolver_auth"
        )
    return url.rstrip("/")


def _names_config(names: dict[str, Any]) -> NamesConfig:
    """[NAMES] as a whole: with ``enable = on`` an endpoint is required and checked against
    resolver_auth. Every key's own value is checked even when off (a typo never hides)."""
    if not names.get("enable", False):
        return NamesConfig(**names)
    endpoint = names.get("resolver_endpoint")
    if endpoint is None:
        raise ConfigError("is required with `enable = on`", "NAMES", "resolver_endpoint")
    try:
        endpoint = validate_resolver_endpoint(endpoint, "resolver_auth" in names)
    except ValueError as e:
        raise ConfigError(str(e), "NAMES", "resolver_endpoint") from None
    return NamesConfig(**{**names, "resolver_endpoint": endpoint})


def _endpoint_syntax(value: str) -> str:
    validate_resolver_endpoint(value, with_auth=False)
    return value


# --- schema -----------------------------------------------------------------------------------

_INFORMATION_KEYS: dict[str, Callable[[str], Any]] = {
    "source_code": _text,
    "usage_conditions": _text,
    "condition_amendments": _text,
    "server_country": _country,
    "operator": _text,
    "operator_country": _country,
    "website": _text,
    "admin_simplex": _text,
    "admin_email": _text,
    "admin_pgp": _text,
    "admin_pgp_fingerprint": _text,
    "complaints_simplex": _text,
    "complaints_email": _text,
    "complaints_pgp": _text,
    "complaints_pgp_fingerprint": _text,
    "hosting": _text,
    "hosting_country": _country,
    "hosting_type": _hosting_type,
}

_SCHEMA: dict[str, dict[str, Callable[[str], Any]]] = {
    "INFORMATION": _INFORMATION_KEYS,
    "STORE_LOG": {
        "expire_messages_days": _int_range(1, 36500),
        "expire_messages_on_start": parse_on_off,
        "expire_messages_on_send": parse_on_off,
        "expire_ntfs_hours": _int_range(1, 876000),
        "log_stats": parse_on_off,
        "prometheus_interval": _int_range(1, 2**31 - 1),
    },
    "AUTH": {
        "new_queues": parse_on_off,
        "create_password": validate_basic_auth,
        "control_port_admin_password": validate_basic_auth,
        "control_port_user_password": validate_basic_auth,
        "daily_block_queue_quota": _int_signed,
    },
    "TRANSPORT": {
        "host": parse_hosts,
        "port": parse_ports,
        "bind": _bind,
        "log_tls_errors": parse_on_off,
        "control_port": _int_range(1, 65535),
        "accept_service_credentials": parse_on_off,
        "workers": _int_range(1, 256),
    },
    "INACTIVE_CLIENTS": {
        "disconnect": parse_on_off,
        "ttl": _int_range(1, 2**31 - 1),
        "check_interval": _int_range(1, 2**31 - 1),
    },
    "PROMETHEUS": {
        "port": _int_range(1, 65535),
        "bind": _bind,
    },
    "LOG": {
        "stats_interval": _int_range(0, 2**31 - 1),
        "level": _choice(*LOG_LEVELS),
        "format": _choice(*LOG_FORMATS),
    },
    "WEB": {
        "static_path": _text,
        "http": _int_range(1, 65535),
        "https": _int_range(1, 65535),
        "cert": _text,
        "key": _text,
    },
    "STORE": {
        "path": _text,
        "map_size": parse_size,
        "map_size_max": parse_size,
        "durability": _choice(*DURABILITY_MODES),
        "commit_interval_ms": _int_range(0, 10000),
    },
    "LIMITS": {
        "max_connections": _int_range(1, 10_000_000),
        "tls_handshake_timeout": _int_range(1, 3600),
        "smp_handshake_timeout": _int_range(1, 3600),
        "outbox_limit": _int_range(1, 65536),
        "proxy_relay_connections": _int_range(1, 10_000_000),
        "proxy_connect_timeout": _int_range(1, 3600),
        "proxy_request_timeout": _int_range(1, 3600),
    },
    "PROXY": {
        "socks_proxy": _socks_proxy,
        "socks_mode": _choice(*SOCKS_MODES),
        "host_mode": _choice(*HOST_MODES),
        "required_host_mode": parse_on_off,
        "own_server_domains": _domains,
        "client_concurrency": _int_range(1, 65536),
    },
    "NAMES": {
        "enable": parse_on_off,
        "resolver_endpoint": _endpoint_syntax,
        "resolver_auth": parse_resolver_auth,
        "resolver_timeout_ms": _int_range(*RESOLVER_TIMEOUT_MS_RANGE),
        "resolver_max_response_bytes": _int_range(*RESOLVER_MAX_RESPONSE_BYTES_RANGE),
        "resolver_concurrency": _int_range(1, 10_000_000),
    },
}

# Keys the reference's `init` writes uncommented, accepted only with the value that already
# describes smpfast (queues and messages always persist, in LMDB; plain TLS only).  Anything
# else in them is an error, because smpfast cannot do what it would ask for.
_COMPAT: dict[str, dict[str, str]] = {
    "STORE_LOG": {
        "enable": "on",
        "store_queues": "memory",
        "store_messages": "memory",
        "restore_messages": "on",
    },
    "TRANSPORT": {"websockets": "off"},
}

# Sections the reference's `init` writes that smpfast accepts only when empty of keys.
_EMPTY_ONLY_SECTIONS: tuple[str, ...] = ()


def _did_you_mean(name: str, known: Sequence[str], form: str) -> str:
    """``; did you mean X?`` for the nearest known name, or nothing."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(name.lower(), [k.lower() for k in known], n=1, cutoff=0.6)
        close = [k for k in known if close and k.lower() == close[0]]
    return f"; did you mean {form.format(close[0])}?" if close else ""


def _read_ini(text: str, source: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        interpolation=None,
        strict=True,
        empty_lines_in_values=False,
        comment_prefixes=("#", ";"),
        inline_comment_prefixes=None,
        default_section="\x00no default section",
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    try:
        parser.read_string(text, source=source)
    except configparser.DuplicateSectionError as e:
        raise ConfigError(f"section appears twice in {source}", e.section) from None
    except configparser.DuplicateOptionError as e:
        raise ConfigError(f"key appears twice in {source}", e.section, e.option) from None
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(f"{source} line {e.lineno}: setting outside any [SECTION]") from None
    except configparser.ParsingError as e:
        lines = ", ".join(str(n) for n, _ in e.errors)
        raise ConfigError(f"{source}: cannot parse line(s) {lines} (expected `key = value`)") from None
    return parser


def parse_config(text: str, config_dir: str | os.PathLike[str], source: str = INI_FILE) -> Config:
    """Parse INI ``text`` for a server whose files live in ``config_dir``."""
    config_dir = Path(config_dir).absolute()
    ini = _read_ini(text, source)
    values: dict[str, dict[str, Any]] = {s: {} for s in _SCHEMA}
    for section in ini.sections():
        if section in _EMPTY_ONLY_SECTIONS:
            for key in ini[section]:
                raise ConfigError("not supported by smpfast (remove it)", section, key)
            continue
        if section not in _SCHEMA and section not in _COMPAT:
            known = ", ".join(f"[{s}]" for s in _SCHEMA)
            hint = _did_you_mean(section, [*_SCHEMA, *_COMPAT], "[{}]")
            raise ConfigError(f"unknown section in {source}{hint} (known: {known})", section)
        for key, raw in ini[section].items():
            value = raw.strip()
            compat = _COMPAT.get(section, {}).get(key)
            if compat is not None:
                if value != compat:
                    raise ConfigError(
                        f"smpfast supports only `{key} = {compat}` (got {value!r})", section, key
                    )
                continue
            parse = _SCHEMA.get(section, {}).get(key)
            if parse is None:
                known_keys = [*_SCHEMA.get(section, {}), *_COMPAT.get(section, {})]
                hint = _did_you_mean(key, known_keys, "`{}`")
                raise ConfigError(f"unknown key in {source}{hint}", section, key)
            try:
                values[section][key] = parse(value)
            except ValueError as e:
                raise ConfigError(str(e), section, key) from None

    info = values["INFORMATION"]
    web = _web_config(values["WEB"], config_dir)
    store = values["STORE"]
    store_path = Path(store.pop("path", DEFAULT_STORE_DIR))
    return Config(
        config_dir=config_dir,
        ini_path=config_dir / INI_FILE,
        files=CredentialPaths.in_dir(config_dir),
        # Like the reference: without source_code nothing is published.
        information=InformationConfig(**info) if "source_code" in info else None,
        store_log=StoreLogConfig(**values["STORE_LOG"]),
        auth=AuthConfig(**values["AUTH"]),
        transport=TransportConfig(**values["TRANSPORT"]),
        inactive_clients=InactiveClientsConfig(**values["INACTIVE_CLIENTS"]),
        store=StoreConfig(path=config_dir / store_path, **store),
        limits=LimitsConfig(**values["LIMITS"]),
        prometheus=PrometheusConfig(**values["PROMETHEUS"]),
        log=LogConfig(**values["LOG"]),
        proxy=ProxyConfig(**values["PROXY"]),
        names=_names_config(values["NAMES"]),
        web=web,
    )


def _web_config(web: dict[str, Any], config_dir: Path) -> WebConfig | None:
    """[WEB] as a whole: settings that would be silently unused are errors."""
    if not web:
        return None
    if "static_path" not in web:
        key = next(iter(web))
        raise ConfigError("needs `static_path` (the directory of the generated page) in [WEB]", "WEB", key)
    https_keys = [k for k in ("https", "cert", "key") if k in web]
    if https_keys and len(https_keys) != 3:
        missing = ", ".join(f"`{k}`" for k in ("https", "cert", "key") if k not in web)
        raise ConfigError(f"HTTPS needs `https`, `cert` and `key` together; missing {missing}",
                          "WEB", https_keys[0])
    return WebConfig(
        static_path=config_dir / web["static_path"],
        http=web.get("http"),
        https=web.get("https"),
        cert=config_dir / web["cert"] if "cert" in web else None,
        key=config_dir / web["key"] if "key" in web else None,
    )


def load_config(config_dir: str | os.PathLike[str]) -> Config:
    """Read ``<config_dir>/smpfast.ini``."""
    path = Path(config_dir) / INI_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path} not found (run `smpfast init`)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    return parse_config(text, config_dir, source=str(path))


# --- server address ---------------------------------------------------------------------------


def server_address(
    fingerprint: str,
    hosts: Sequence[str],
    ports: Sequence[int] = (DEFAULT_PORT,),
    password: str | None = None,
) -> str:
    """The address clients are given: ``smp://<fp>[:<password>]@<h1>[,<h2>...][:<port>]``.

    The port shown is the first configured one, omitted when it is 5223 (the clients' default).
    (The reference prints its raw ``port`` setting unless it is exactly "5223", which for a list
    such as "5223,443" is not a valid address; smpfast prints one port.)
    """
    host_list = list(hosts) or [NO_HOST]
    port = ports[0] if ports else DEFAULT_PORT
    port_part = "" if port == DEFAULT_PORT else f":{port}"
    if port_part and ":" in host_list[-1] and not host_list[-1].startswith("["):
        host_list[-1] = f"[{host_list[-1]}]"  # keep an IPv6 literal apart from the port
    auth = f":{password}" if password else ""
    return f"smp://{fingerprint}{auth}@{','.join(host_list)}{port_part}"


# --- the file `init` writes -------------------------------------------------------------------


def _ini_value(value: str | None, placeholder: str) -> str:
    return value if value is not None else placeholder


def default_ini_text(
    *,
    hosts: Sequence[str],
    ports: Sequence[int] = (DEFAULT_PORT,),
    bind: str = DEFAULT_BIND,
    create_password: str | None = None,
    source_code: str | None = None,
    control_port: int | None = None,
    control_passwords: tuple[str, str] | None = None,
    socks_proxy: str | None = None,
    own_domains: Sequence[str] = (),
) -> str:
    """A complete, commented ``smpfast.ini``; parsing it gives exactly these settings.
    ``control_passwords`` is (admin, user); with ``control_port`` None the control-port
    lines are written commented out."""
    public = not ipaddress.ip_address(bind).is_loopback
    host_line = f"host = {','.join(hosts)}" if hosts else "# host = smp.example.com"
    src = f"source_code = {source_code}" if source_code else "# source_code = https://..."
    pwd = (
        f"create_password = {create_password}"
        if create_password is not None
        else "# create_password = <printable ASCII, no spaces, '@', ':' or '/'>"
    )
    if control_passwords is not None:
        admin_pwd = f"control_port_admin_password = {control_passwords[0]}"
        user_pwd = f"control_port_user_password = {control_passwords[1]}"
    else:
        admin_pwd = "# control_port_admin_password = <printable ASCII, no spaces, '@', ':' or '/'>"
        user_pwd = "# control_port_user_password = <another one>"
    control_line = (
        f"control_port = {control_port}" if control_port is not None else f"# control_port = {DEFAULT_CONTROL_PORT}"
    )
    socks_line = f"socks_proxy = {socks_proxy}" if socks_proxy else "# socks_proxy = 127.0.0.1:9050"
    domains_line = (
        f"own_server_domains = {' '.join(own_domains)}" if own_domains else "# own_server_domains = example.com"
    )
    if public:
        bind_comment = (
            "# Listen address. `::` accepts connections on every interface (IPv6 and, on most\n"
            "# systems, IPv4 too). Use 127.0.0.1 to accept local connections only."
        )
    else:
        bind_comment = (
            "# Listen address. Loopback only: nothing outside this machine can connect.\n"
            "# Set `bind = ::` (all interfaces) or a public address to run a public relay."
        )
    return f"""\
# smpfast server configuration.
# Sections and keys follow the reference server's smp-server.ini where they mean the same.
# Values: `on`/`off` for switches. Unknown sections or keys, and invalid values, stop the
# server at start-up with a message naming them. A line starting with `#` is a comment.
#
# Accepted for compatibility with a copied smp-server.ini (only these values, they describe
# what smpfast always does): [STORE_LOG] enable = on, store_queues = memory,
# store_messages = memory, restore_messages = on; [TRANSPORT] websockets = off. Other
# reference keys (database, websockets, ...) are not supported.

[INFORMATION]
# Public information about this server. Nothing here is published unless source_code is set.
# The AGPLv3 licence requires you to offer the source code you run, modifications included:
# point source_code at it. All other keys below are optional.
{src}
# usage_conditions = https://...
# condition_amendments = https://...
# server_country = two-letter ISO 3166 code
# operator = organisation or person
# operator_country = two-letter ISO 3166 code
# website = https://...
# admin_simplex = SimpleX contact address
# admin_email =
# admin_pgp =
# admin_pgp_fingerprint =
# complaints_simplex = SimpleX contact address
# complaints_email =
# complaints_pgp =
# complaints_pgp_fingerprint =
# hosting = hosting provider
# hosting_country = two-letter ISO 3166 code
# hosting_type = virtual, dedicated, colocation or owned

[STORE_LOG]
# Queues and messages always persist in the LMDB store (see [STORE]).
# How long undelivered messages are kept, and when old ones are removed.
expire_messages_days = 21
expire_messages_on_start = on
# Removing expired messages of a queue whenever a message is sent to it (off: only by the
# periodic expiry task; the reference server also writes off here).
expire_messages_on_send = off
# How long undelivered notifications are kept.
expire_ntfs_hours = 24
# Daily statistics: `on` appends one line a day at 00:00 UTC to smp-server-stats.daily.log in
# this directory, with the reference's columns (counters for the day, then totals). The
# counts of the day so far are saved to smp-server-stats.log on stop and read back on start.
log_stats = off
# Seconds between writes of the Prometheus text file smp-server-metrics.txt in this
# directory (as the reference; for node_exporter's textfile collector, say). Commented out:
# no file. See also [PROMETHEUS] for scraping over HTTP.
# prometheus_interval = 60

[AUTH]
# `off` refuses to create new queues (e.g. while decommissioning the server); existing
# queues keep working.
new_queues = on
# A password required to create queues and to use this server as a proxy. It becomes part
# of the server address (smp://fingerprint:password@host); give it only to the people who
# may create queues here, your contacts never see it. Comment it out for an open server.
{pwd}
# Passwords of the control port ([TRANSPORT] control_port): `auth <password>` gives the admin
# role (every command) or the user role (stats, status, block, unblock, sockets, server-info).
{admin_pwd}
{user_pwd}
# How many queues the control port may block per day (the count restarts at 00:00 UTC);
# 0 means no limit, a negative number forbids blocking.
# daily_block_queue_quota = {DEFAULT_DAILY_BLOCK_QUOTA}

[TRANSPORT]
# Host names or IP addresses clients use to reach this server, comma-separated. They are
# only printed in the server address; they do not affect what the server listens on.
{host_line}
# TCP ports to serve, comma-separated (for example 5223,443). The address shows the first
# one unless it is 5223. Ports below 1024 need privileges.
port = {",".join(str(p) for p in ports)}
{bind_comment}
bind = {bind}
# Log failed TLS handshakes.
log_tls_errors = off
# The operators' control port: plain text, always on 127.0.0.1 only (`telnet 127.0.0.1
# <port>`, then `help`). Commented out: no control port.
{control_line}
# Worker processes, each with its own event loop, serving the ports together on one store
# (commented out: one per core; 1: a single process).
# workers = 4

[PROXY]
# The server is also an SMP proxy for private message routing: a client sends each message
# to a proxy it uses, which forwards it to the recipient's relay over one connection per
# relay, so the relay does not see the sender's address (PRXY and PFWD need the
# create_password of [AUTH] when one is set).
# A SOCKS5 proxy (such as Tor, [user:pass@]IP[:port]) for the connections to relays; without
# `user:pass@` each connection asks for its own Tor circuit by its credentials, with `@` it
# sends none.
{socks_line}
# `onion`: use it for .onion relays only; `always`: for every relay.
# socks_mode = onion
# Which host of a relay with several to prefer: `public` or `onion` (when socks_proxy is set).
# host_mode = public
# `on`: a relay without a host of that kind is an error, instead of trying its other hosts.
# required_host_mode = off
# Domain suffixes of the relays you operate (space-separated), counted apart in the statistics.
{domains_line}
# Proxied commands one client may have in flight at once.
# client_concurrency = {DEFAULT_CLIENT_CONCURRENCY}

[NAMES]
# Name resolution (SMP v20: RSLV, e.g. alice.simplex): the server asks an HTTP resolver you
# run (GET <resolver_endpoint>/resolve/<name>, answering the name's record as JSON; 404 for
# unknown names). Off: RSLV answers ERR NAME NO_RESOLVER, and clients try another server.
enable = off
# The resolver on this host:
# resolver_endpoint = http://127.0.0.1:8000
# Or behind a TLS reverse proxy (plain http may carry resolver_auth only to a loopback host):
# resolver_endpoint = https://names.example.com:443
# resolver_auth = basic <username>:<password>
# (or `bearer <token>`)
# Milliseconds a resolution may take (100..60000), and the largest record accepted in bytes
# (1024..16000).
# resolver_timeout_ms = {DEFAULT_RESOLVER_TIMEOUT_MS}
# resolver_max_response_bytes = {DEFAULT_RESOLVER_MAX_RESPONSE_BYTES}
# Resolutions one connection may have in flight at once (counted with its proxied commands;
# higher than client_concurrency because one proxy's connection carries the forwarded RSLVs
# of many clients).
# resolver_concurrency = {DEFAULT_RESOLVER_CONCURRENCY}

[PROMETHEUS]
# Prometheus metrics over HTTP at http://<bind>:<port>/metrics, with the reference's metric
# names. Commented out: no endpoint. The bind address is loopback unless you change it.
# port = 9090
# bind = 127.0.0.1

[LOG]
# Seconds between one-line statistics summaries in the log (0: none). The log never contains
# IP addresses or queue ids.
stats_interval = 3600
# Least severe messages logged: debug, info, warn or error (`smpfast start --debug`: debug).
level = info
# text: one line per message; json: one JSON object per line (time, level, logger, message).
format = text

[WEB]
# A small information page: the [INFORMATION] fields, the address and this server's
# settings, generated as index.html in static_path (relative to this directory) at every
# start. Commented out: no page. Other files put in static_path are served too.
# static_path = www
# Serve it over plain HTTP on this port (e.g. behind a reverse proxy, or for an onion site).
# http = 8000
# Serve it over HTTPS on this port, with a certificate and key for your domain (PEM,
# 4096-bit RSA as the reference requires, e.g. from Let's Encrypt: certbot certonly
# --standalone -d your.domain --key-type rsa --rsa-key-size 4096). When this port is also an
# SMP port (443 with `port = 5223,443`), it is shared: browsers, which send the domain name
# (SNI), get the page; SMP clients, which do not, get SMP.
# https = 443
# cert = /etc/letsencrypt/live/your.domain/fullchain.pem
# key = /etc/letsencrypt/live/your.domain/privkey.pem

[INACTIVE_CLIENTS]
# Disconnect clients that have no subscriptions and have neither sent nor received
# anything for `ttl` seconds, checked every `check_interval` seconds.
disconnect = on
ttl = 21600
check_interval = 3600

[STORE]
# LMDB store directory, relative to this file's directory unless absolute.
path = {DEFAULT_STORE_DIR}
# The largest the store may grow (bytes, or with K, M, G or T). Disk space is used only as
# data is written; raising it later is fine, lowering it below the data size is not.
map_size = 8G
# When the map fills up, double it (at most up to this size) instead of refusing writes
# until space is freed. Unset: the map never grows by itself.
# map_size_max = 32G
# fsync: a reply to a change is sent only after the change is on disk.
# none: faster, but a machine crash can lose recent acknowledged changes.
durability = fsync
# Group-commit window in milliseconds: changes from all connections arriving within it
# share one disk write.
commit_interval_ms = 2

[LIMITS]
# Connections open at once, TLS handshakes in progress included. Over it a new connection
# is closed straight away (logged once while it lasts); open ones are not affected.
# Each connection needs a file descriptor and some memory (see the README).
max_connections = {DEFAULT_MAX_CONNECTIONS}
# Seconds a client has to complete the TLS handshake, then the SMP handshake (client
# hello); a client that is slower is disconnected.
tls_handshake_timeout = 60
smp_handshake_timeout = 120
# Answer batches waiting for a connection whose client does not read them; at this many
# the server stops reading that connection's commands until the client catches up.
outbox_limit = 128
# The proxy role's connections to relays: how many may be open at once, and the seconds one
# may take to connect (TCP, SOCKS, TLS, SMP handshake) and a relay to answer a forwarded
# message.
proxy_relay_connections = 10000
proxy_connect_timeout = 45
proxy_request_timeout = 30
"""
