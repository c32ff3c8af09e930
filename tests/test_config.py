"""smpfast.ini: defaults, every key, strictness, the text init writes, the server address."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest

from smpfast.transport.socks import SocksProxy
from smpfast.config import (
    ProxyConfig,
    DEFAULT_MAP_SIZE,
    AuthConfig,
    ConfigError,
    InactiveClientsConfig,
    InformationConfig,
    LimitsConfig,
    LogConfig,
    NamesConfig,
    PrometheusConfig,
    StoreLogConfig,
    TransportConfig,
    WebConfig,
    default_ini_text,
    load_config,
    parse_config,
    parse_size,
    server_address,
)

FP = "gwdrv30yRWcGeU-BaQSVaTl6-NyQXQn9Ipip2XAM15w="


def test_defaults_from_empty_file(tmp_path: Path) -> None:
    cfg = parse_config("", tmp_path)
    assert cfg.config_dir == tmp_path.absolute()
    assert cfg.ini_path == tmp_path / "smpfast.ini"
    assert cfg.files.ca_key == tmp_path / "ca.key"
    assert cfg.files.server_cert == tmp_path / "server.crt"
    assert cfg.files.fingerprint == tmp_path / "fingerprint"
    assert cfg.information is None
    assert cfg.store_log == StoreLogConfig(21, True, True, 24, False)
    assert cfg.store_log.message_ttl_seconds == 21 * 86400
    assert cfg.store_log.notification_ttl_seconds == 24 * 3600
    assert cfg.auth == AuthConfig(new_queues=True, create_password=None)
    assert cfg.transport == TransportConfig(host=(), port=(5223,), bind="127.0.0.1", log_tls_errors=False)
    assert cfg.inactive_clients == InactiveClientsConfig(True, 21600, 3600)
    assert cfg.store.path == tmp_path / "store"
    assert cfg.store.map_size == DEFAULT_MAP_SIZE == 8 * 1024**3
    assert cfg.store.durability == "fsync"
    assert cfg.store.commit_interval_ms == 2
    assert cfg.limits == LimitsConfig(10000, 60, 120, 128)


FULL_INI = """\
[INFORMATION]
source_code = https://example.com/src
usage_conditions = https://example.com/terms
condition_amendments = https://example.com/amend
server_country = de
operator = Example Org
operator_country = FR
website = https://example.com
admin_simplex = simplex:/contact#abc
admin_email = admin@example.com
admin_pgp = https://example.com/admin.asc
admin_pgp_fingerprint = 0123ABCD
complaints_simplex = simplex:/contact#def
complaints_email = abuse@example.com
complaints_pgp = https://example.com/abuse.asc
complaints_pgp_fingerprint = 4567EF
hosting = Hoster Ltd
hosting_country = nl
hosting_type = dedicated

[STORE_LOG]
expire_messages_days = 7
expire_messages_on_start = off
expire_messages_on_send = off
expire_ntfs_hours = 12
log_stats = off
prometheus_interval = 30

[AUTH]
new_queues = off
create_password = s3cret!#;=
control_port_admin_password = adm1n
control_port_user_password = us3r
daily_block_queue_quota = -1

[TRANSPORT]
host = smp.example.com, [2001:db8::1],192.0.2.1
port = 5224, 443
bind = ::
log_tls_errors = on
control_port = 5225
accept_service_credentials = off
workers = 3

[INACTIVE_CLIENTS]
disconnect = off
ttl = 600
check_interval = 60

[PROMETHEUS]
port = 9091
bind = ::1

[LOG]
stats_interval = 0
level = error
format = json

[WEB]
static_path = /srv/www
http = 8080
https = 443
cert = web.crt
key = web.key

[STORE]
path = /var/lib/smpfast
map_size = 512M
map_size_max = 2G
durability = none
commit_interval_ms = 0

[LIMITS]
max_connections = 500
tls_handshake_timeout = 5
smp_handshake_timeout = 7
outbox_limit = 16
proxy_relay_connections = 3
proxy_connect_timeout = 4
proxy_request_timeout = 6

[PROXY]
socks_proxy = alice:pw@[::1]:9150
socks_mode = always
host_mode = onion
required_host_mode = on
own_server_domains = example.com  example.net
client_concurrency = 8

[NAMES]
enable = on
resolver_endpoint = https://names.example.com:8443/api/
resolver_auth = Basic alice:pa:ss
resolver_timeout_ms = 250
resolver_max_response_bytes = 2048
resolver_concurrency = 5
"""


def test_every_key_parsed(tmp_path: Path) -> None:
    cfg = parse_config(FULL_INI, tmp_path)
    assert cfg.information == InformationConfig(
        source_code="https://example.com/src",
        usage_conditions="https://example.com/terms",
        condition_amendments="https://example.com/amend",
        server_country="DE",
        operator="Example Org",
        operator_country="FR",
        website="https://example.com",
        admin_simplex="simplex:/contact#abc",
        admin_email="admin@example.com",
        admin_pgp="https://example.com/admin.asc",
        admin_pgp_fingerprint="0123ABCD",
        complaints_simplex="simplex:/contact#def",
        complaints_email="abuse@example.com",
        complaints_pgp="https://example.com/abuse.asc",
        complaints_pgp_fingerprint="4567EF",
        hosting="Hoster Ltd",
        hosting_country="NL",
        hosting_type="dedicated",
    )
    assert cfg.store_log == StoreLogConfig(7, False, False, 12, False, 30)
    assert cfg.auth == AuthConfig(new_queues=False, create_password="s3cret!#;=", control_port_admin_password="adm1n",
                                  control_port_user_password="us3r", daily_block_queue_quota=-1)
    assert cfg.transport == TransportConfig(
        host=("smp.example.com", "[2001:db8::1]", "192.0.2.1"), port=(5224, 443), bind="::", log_tls_errors=True,
        control_port=5225, accept_service_credentials=False, workers=3,
    )
    assert cfg.inactive_clients == InactiveClientsConfig(False, 600, 60)
    assert cfg.store.path == Path("/var/lib/smpfast")
    assert cfg.store.map_size == 512 * 1024**2
    assert cfg.store.map_size_max == 2 * 1024**3
    assert cfg.store.durability == "none"
    assert cfg.store.commit_interval_ms == 0
    assert cfg.limits == LimitsConfig(
        max_connections=500, tls_handshake_timeout=5, smp_handshake_timeout=7, outbox_limit=16,
        proxy_relay_connections=3, proxy_connect_timeout=4, proxy_request_timeout=6,
    )
    assert cfg.proxy == ProxyConfig(
        socks_proxy=SocksProxy("::1", 9150, b"alice", b"pw", isolate=False), socks_mode="always",
        host_mode="onion", required_host_mode=True, own_server_domains=("example.com", "example.net"),
        client_concurrency=8,
    )
    assert cfg.names == NamesConfig(
        enable=True, resolver_endpoint="https://names.example.com:8443/api",
        resolver_auth="Basic " + base64.b64encode(b"alice:pa:ss").decode(), resolver_timeout_ms=250,
        resolver_max_response_bytes=2048, resolver_concurrency=5,
    )
    assert cfg.prometheus == PrometheusConfig(port=9091, bind="::1")
    assert cfg.log == LogConfig(stats_interval=0, level="error", format="json")
    assert cfg.web == WebConfig(Path("/srv/www"), 8080, 443, tmp_path.absolute() / "web.crt", tmp_path.absolute() / "web.key")


def test_every_schema_key_is_covered_by_full_ini(tmp_path: Path) -> None:
    from smpfast.config import _SCHEMA

    for section, keys in _SCHEMA.items():
        for key in keys:
            assert f"\n{key} = " in "\n" + FULL_INI, (section, key)


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = parse_config(FULL_INI, tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.auth = AuthConfig()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.transport.port = (1,)  # type: ignore[misc]


def test_information_needs_source_code(tmp_path: Path) -> None:
    cfg = parse_config("[INFORMATION]\nhosting_type = virtual\noperator = X\n", tmp_path)
    assert cfg.information is None  # like the reference: nothing published without source code
    cfg = parse_config("[INFORMATION]\nsource_code = https://x\n", tmp_path)
    assert cfg.information == InformationConfig(source_code="https://x")


def test_relative_store_path(tmp_path: Path) -> None:
    cfg = parse_config("[STORE]\npath = data/lmdb\n", tmp_path)
    assert cfg.store.path == tmp_path / "data" / "lmdb"


def _error(text: str, tmp_path: Path) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, tmp_path)
    return str(exc.value)


def test_unknown_section_and_key(tmp_path: Path) -> None:
    msg = _error("[TRANSPORTS]\nport = 1\n", tmp_path)
    assert "[TRANSPORTS]" in msg and "unknown section" in msg
    msg = _error("[TRANSPORT]\nprot = 1\n", tmp_path)
    assert "[TRANSPORT] prot" in msg and "unknown key" in msg
    # Keys are case-sensitive, like the reference.
    assert "[TRANSPORT] Port" in _error("[TRANSPORT]\nPort = 1\n", tmp_path)
    assert "[WEBS]: unknown section" in _error("[WEBS]\nstatic_path = /x\n", tmp_path)
    assert "did you mean `prometheus_interval`" in _error("[STORE_LOG]\nprometheus_intervall = 60\n", tmp_path)


def test_prometheus_interval_log_and_web_keys(tmp_path: Path) -> None:
    """The reference's prometheus_interval and [WEB], and our [LOG] level and format."""
    cfg = parse_config(
        "[STORE_LOG]\nprometheus_interval = 60\n[LOG]\nlevel = warn\nformat = json\n"
        "[WEB]\nstatic_path = www\nhttp = 8000\nhttps = 443\ncert = web.crt\nkey = /etc/web.key\n",
        tmp_path,
    )
    assert cfg.store_log.prometheus_interval == 60
    assert (cfg.log.level, cfg.log.format) == ("warn", "json")
    web = cfg.web
    assert web is not None
    assert web.static_path == tmp_path.absolute() / "www"  # relative to the config directory
    assert (web.http, web.https) == (8000, 443)
    assert web.cert == tmp_path.absolute() / "web.crt" and web.key == Path("/etc/web.key")
    default = parse_config("", tmp_path)
    assert default.web is None and default.store_log.prometheus_interval is None
    assert (default.log.level, default.log.format) == ("info", "text")


@pytest.mark.parametrize(
    "text, words",
    [
        ("[LOG]\nlevel = verbose\n", "[LOG] level: must be one of debug, info, warn, error, not 'verbose'"),
        ("[LOG]\nformat = xml\n", "[LOG] format: must be one of text, json, not 'xml'"),
        ("[STORE_LOG]\nprometheus_interval = 0\n", "[STORE_LOG] prometheus_interval: must be between 1"),
        ("[WEB]\nhttp = 80\n", "[WEB] http: needs `static_path`"),
        ("[WEB]\nstatic_path = www\nhttps = 443\n", "missing `cert`, `key`"),
        ("[WEB]\nstatic_path = www\ncert = a\nkey = b\n", "missing `https`"),
    ],
)
def test_log_and_web_errors(tmp_path: Path, text: str, words: str) -> None:
    assert words in _error(text, tmp_path)


def test_control_port_keys(tmp_path: Path) -> None:
    """The reference's control-port keys (issue: they used to stop start-up as unknown)."""
    cfg = parse_config(
        "[AUTH]\ncontrol_port_admin_password = x\ncontrol_port_user_password = y\n"
        "[TRANSPORT]\ncontrol_port = 5224\n", tmp_path
    )
    assert (cfg.auth.control_port_admin_password, cfg.auth.control_port_user_password) == ("x", "y")
    assert cfg.transport.control_port == 5224
    assert cfg.auth.daily_block_queue_quota == 20  # the reference's default
    assert parse_config("", tmp_path).transport.control_port is None
    assert parse_config("[AUTH]\ndaily_block_queue_quota = 0\n", tmp_path).auth.daily_block_queue_quota == 0


@pytest.mark.parametrize(
    "section,key,value",
    [
        ("STORE_LOG", "expire_messages_days", "0"),
        ("STORE_LOG", "expire_messages_days", "-1"),
        ("STORE_LOG", "expire_messages_days", "21d"),
        ("STORE_LOG", "expire_ntfs_hours", "1.5"),
        ("STORE_LOG", "log_stats", "yes"),
        ("AUTH", "new_queues", "true"),
        ("AUTH", "create_password", "has space"),
        ("AUTH", "create_password", "a@b"),
        ("AUTH", "create_password", "a:b"),
        ("AUTH", "create_password", "a/b"),
        ("AUTH", "create_password", "caf\u00e9"),
        ("AUTH", "create_password", ""),
        ("AUTH", "create_password", "x" * 256),
        ("TRANSPORT", "port", "0"),
        ("TRANSPORT", "port", "65536"),
        ("TRANSPORT", "port", "5223,,443"),
        ("TRANSPORT", "port", "5223,5223"),
        ("TRANSPORT", "port", "http"),
        ("TRANSPORT", "port", ""),
        ("TRANSPORT", "host", ""),
        ("TRANSPORT", "host", "a.example.com,"),
        ("TRANSPORT", "host", "a.example.com:5223"),
        ("TRANSPORT", "host", "user@host"),
        ("TRANSPORT", "bind", "localhost"),
        ("TRANSPORT", "bind", "300.1.1.1"),
        ("TRANSPORT", "log_tls_errors", "1"),
        ("TRANSPORT", "control_port", "0"),
        ("TRANSPORT", "control_port", "5224,5225"),
        ("AUTH", "control_port_admin_password", "two words"),
        ("AUTH", "control_port_user_password", "a@b"),
        ("AUTH", "daily_block_queue_quota", "1.5"),
        ("AUTH", "daily_block_queue_quota", "many"),
        ("INACTIVE_CLIENTS", "disconnect", "On"),
        ("INACTIVE_CLIENTS", "ttl", "0"),
        ("INACTIVE_CLIENTS", "check_interval", "x"),
        ("STORE", "path", ""),
        ("STORE", "map_size", "8GB"),
        ("STORE", "map_size", "1K"),
        ("STORE", "map_size", "-8G"),
        ("STORE", "durability", "fsync,none"),
        ("STORE", "durability", "sync"),
        ("STORE", "commit_interval_ms", "10001"),
        ("LIMITS", "max_connections", "0"),
        ("LIMITS", "max_connections", "-1"),
        ("LIMITS", "max_connections", "1e4"),
        ("LIMITS", "max_connections", "10000001"),
        ("LIMITS", "tls_handshake_timeout", "0"),
        ("LIMITS", "tls_handshake_timeout", "1.5"),
        ("LIMITS", "tls_handshake_timeout", "3601"),
        ("LIMITS", "smp_handshake_timeout", "0"),
        ("LIMITS", "smp_handshake_timeout", "2m"),
        ("LIMITS", "outbox_limit", "0"),
        ("LIMITS", "outbox_limit", "65537"),
        ("LIMITS", "outbox_limit", ""),
        ("INFORMATION", "server_country", "DEU"),
        ("INFORMATION", "operator_country", "1A"),
        ("INFORMATION", "hosting_type", "cloud"),
        ("INFORMATION", "source_code", ""),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, section: str, key: str, value: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(f"[{section}]\n{key} = {value}\n", tmp_path)
    assert f"[{section}] {key}" in str(exc.value)
    assert exc.value.section == section and exc.value.key == key


@pytest.mark.parametrize("value", ["on", "off"])
def test_on_off_accepted(tmp_path: Path, value: str) -> None:
    cfg = parse_config(f"[TRANSPORT]\nlog_tls_errors = {value}\n", tmp_path)
    assert cfg.transport.log_tls_errors is (value == "on")


def test_log_stats_and_metrics_defaults(tmp_path: Path) -> None:
    assert parse_config("[STORE_LOG]\nlog_stats = on\n", tmp_path).store_log.log_stats is True
    cfg = parse_config("", tmp_path)
    assert cfg.store_log.log_stats is False
    assert cfg.prometheus == PrometheusConfig(port=None, bind="127.0.0.1")  # off, and loopback
    assert cfg.log.stats_interval == 3600
    with pytest.raises(ConfigError) as exc:
        parse_config("[PROMETHEUS]\nprot = 9090\n", tmp_path)
    assert "did you mean `port`?" in str(exc.value)


@pytest.mark.parametrize("value", ["ON", "Off", "yes", "no", "true", "false", "1", "0", "", "on off"])
def test_on_off_strict(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"\[AUTH\] new_queues: must be on or off"):
        parse_config(f"[AUTH]\nnew_queues = {value}\n", tmp_path)


def test_reference_compat_keys(tmp_path: Path) -> None:
    # What the reference's `init` writes uncommented and is already true of smpfast.
    text = (
        "[STORE_LOG]\nenable = on\nstore_queues = memory\nstore_messages = memory\n"
        "restore_messages = on\n[TRANSPORT]\nwebsockets = off\n[PROXY]\n# only comments\n"
    )
    assert parse_config(text, tmp_path).store_log == StoreLogConfig()
    for section, key, value in [
        ("STORE_LOG", "enable", "off"),
        ("STORE_LOG", "store_queues", "database"),
        ("STORE_LOG", "store_messages", "journal"),
        ("STORE_LOG", "restore_messages", "off"),
        ("TRANSPORT", "websockets", "443"),
        ("PROXY", "socks_proxy", "localhost:9050"),
    ]:
        msg = _error(f"[{section}]\n{key} = {value}\n", tmp_path)
        assert f"[{section}] {key}" in msg


def test_ini_syntax_errors(tmp_path: Path) -> None:
    assert "[AUTH] new_queues" in _error("[AUTH]\nnew_queues = on\nnew_queues = off\n", tmp_path)
    assert "[AUTH]" in _error("[AUTH]\n[AUTH]\n", tmp_path)
    assert "outside any [SECTION]" in _error("port = 5223\n", tmp_path)
    assert "cannot parse" in _error("[AUTH]\nnew_queues\n", tmp_path)


def test_comments_and_no_interpolation(tmp_path: Path) -> None:
    cfg = parse_config("# c\n; c\n[AUTH]\n# x = 1\ncreate_password = %(x)s#;\n", tmp_path)
    assert cfg.auth.create_password == "%(x)s#;"


def test_parse_size() -> None:
    assert parse_size("8G") == 8 * 1024**3
    assert parse_size("8g") == 8 * 1024**3
    assert parse_size("1024M") == 1024**3
    assert parse_size("1048576") == 1024**2
    assert parse_size("2T") == 2 * 1024**4


def test_load_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path)
    (tmp_path / "smpfast.ini").write_text("[TRANSPORT]\nport = 7000\n")
    assert load_config(tmp_path).transport.port == (7000,)
    (tmp_path / "smpfast.ini").write_text("[TRANSPORT]\nport = 70000\n")
    with pytest.raises(ConfigError, match=r"\[TRANSPORT\] port"):
        load_config(tmp_path)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(hosts=("127.0.0.1",)),
        dict(hosts=("smp.example.com", "abc.onion"), ports=(5223, 443), bind="::", create_password="pw"),
        dict(hosts=(), ports=(7001,), source_code="https://example.com/src"),
        dict(hosts=("::1",), bind="::1", create_password="x!y"),
        dict(hosts=("127.0.0.1",), control_port=5224, control_passwords=("adm", "usr")),
    ],
)
def test_default_ini_text_round_trip(tmp_path: Path, kwargs: dict) -> None:
    text = default_ini_text(**kwargs)
    cfg = parse_config(text, tmp_path)
    assert cfg.transport.host == tuple(kwargs["hosts"])
    assert cfg.transport.port == tuple(kwargs.get("ports", (5223,)))
    assert cfg.transport.bind == kwargs.get("bind", "127.0.0.1")
    admin, user = kwargs.get("control_passwords", (None, None))
    assert cfg.auth == AuthConfig(new_queues=True, create_password=kwargs.get("create_password"),
                                  control_port_admin_password=admin, control_port_user_password=user)
    assert cfg.transport.control_port == kwargs.get("control_port")
    src = kwargs.get("source_code")
    assert (cfg.information.source_code if cfg.information else None) == src
    # Everything else is the documented default, except what init writes like the reference.
    assert cfg.store_log == StoreLogConfig(expire_messages_on_send=False)
    assert cfg.inactive_clients == InactiveClientsConfig()
    assert cfg.store == parse_config("", tmp_path).store
    assert cfg.limits == LimitsConfig()
    assert text.count("\n") > 60  # commented, not bare


def test_server_address() -> None:
    assert server_address(FP, ["127.0.0.1"]) == f"smp://{FP}@127.0.0.1"
    assert server_address(FP, ["a.com", "b.onion"], (5223, 443), "pw") == f"smp://{FP}:pw@a.com,b.onion"
    assert server_address(FP, ["a.com"], (443, 5223)) == f"smp://{FP}@a.com:443"
    assert server_address(FP, [], (5224,)) == f"smp://{FP}@<hostnames>:5224"
    assert server_address(FP, ["2001:db8::1"]) == f"smp://{FP}@2001:db8::1"
    assert server_address(FP, ["2001:db8::1"], (5224,)) == f"smp://{FP}@[2001:db8::1]:5224"


def test_config_address(tmp_path: Path) -> None:
    cfg = parse_config(FULL_INI, tmp_path)
    assert cfg.address(FP) == f"smp://{FP}:s3cret!#;=@smp.example.com,[2001:db8::1],192.0.2.1:5224"


@pytest.mark.parametrize(("value", "expected"), [
    ("127.0.0.1:9050", SocksProxy("127.0.0.1", 9050)),
    ("9150", None),
    (":9150", SocksProxy("127.0.0.1", 9150)),
    ("@127.0.0.1", SocksProxy("127.0.0.1", 9050, isolate=False)),
    ("u:p@10.0.0.1:1", SocksProxy("10.0.0.1", 1, b"u", b"p", isolate=False)),
    ("::1", SocksProxy("::1", 9050)),
    ("[::1]:9050", SocksProxy("::1", 9050)),
    ("localhost:9050", None),  # the reference accepts IP addresses only
    ("127.0.0.1:0", None),
    ("nopass@127.0.0.1", None),
])
def test_socks_proxy_values(tmp_path: Path, value: str, expected: SocksProxy | None) -> None:
    text = f"[PROXY]\nsocks_proxy = {value}\n"
    if expected is None:
        assert "[PROXY] socks_proxy" in _error(text, tmp_path)
    else:
        assert parse_config(text, tmp_path).proxy.socks_proxy == expected


def test_proxy_defaults_are_the_references(tmp_path: Path) -> None:
    assert parse_config("", tmp_path).proxy == ProxyConfig(None, "onion", "public", False, (), 32)
    assert "must be one of" in _error("[PROXY]\nsocks_mode = never\n", tmp_path)
    assert "must be one of" in _error("[PROXY]\nhost_mode = tor\n", tmp_path)
