"""[NAMES] (SMP v20 name resolution): the reference's keys, defaults and start-up checks
(docs/protocol-v19-v20.md §5.1), each failure one line naming the key."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from smpfast.config import ConfigError, NamesConfig, default_ini_text, parse_config
from smpfast.server.resolver import ResolverSettings


def names(tmp_path: Path, body: str) -> NamesConfig:
    return parse_config("[NAMES]\n" + body, tmp_path).names


def error(tmp_path: Path, body: str) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config("[NAMES]\n" + body, tmp_path)
    return str(e.value)


def test_defaults_are_the_reference_ones(tmp_path: Path) -> None:
    for cfg in (parse_config("", tmp_path).names, names(tmp_path, "")):
        assert cfg == NamesConfig(enable=False, resolver_endpoint=None, resolver_auth=None,
                                  resolver_timeout_ms=3000, resolver_max_response_bytes=16000,
                                  resolver_concurrency=1000)
        assert cfg.resolver_settings() is None  # RSLV answers NAME NO_RESOLVER


def test_enabled_resolver_settings(tmp_path: Path) -> None:
    cfg = names(tmp_path, "enable = on\nresolver_endpoint = http://127.0.0.1:8000/\n")
    assert cfg.resolver_settings() == ResolverSettings("http://127.0.0.1:8000", 3.0, 16000, None)
    # the reference's own init writes `key: value`
    cfg = names(tmp_path, "enable: on\nresolver_endpoint: https://names.example.com:443/p//\n"
                          "resolver_timeout_ms: 100\nresolver_max_response_bytes: 1024\n")
    assert cfg.resolver_settings() == ResolverSettings("https://names.example.com:443/p", 0.1, 1024, None)


def test_off_ignores_a_missing_endpoint(tmp_path: Path) -> None:
    cfg = names(tmp_path, "enable = off\nresolver_timeout_ms = 500\n")
    assert not cfg.enable and cfg.resolver_settings() is None


@pytest.mark.parametrize("value", ["yes", "On", "1"])
def test_enable_is_on_or_off(tmp_path: Path, value: str) -> None:
    assert error(tmp_path, f"enable = {value}\n").startswith("[NAMES] enable: must be on or off")


def test_endpoint_required_when_on(tmp_path: Path) -> None:
    assert error(tmp_path, "enable = on\n") == "[NAMES] resolver_endpoint: is required with `enable = on`"


@pytest.mark.parametrize("url, message", [
    ("ftp://127.0.0.1", "scheme must be http or https"),
    ("HTTP://127.0.0.1", "scheme must be http or https"),
    ("127.0.0.1:8000", "scheme must be http or https"),
    ("http:/resolver", "missing host"),
    ("http://:8000", "empty host"),
    ("http://user:pw@127.0.0.1", "userinfo (user:pass@) not allowed"),
    ("http://127.0.0.1:99999", "not an absolute URL"),
    ("http://127.0.0.1/a b", "not an absolute URL"),
])
def test_endpoint_checks(tmp_path: Path, url: str, message: str) -> None:
    assert error(tmp_path, f"enable = on\nresolver_endpoint = {url}\n").startswith(
        f"[NAMES] resolver_endpoint: {message}")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "0.0.0.0"])
def test_plain_http_with_auth_only_to_loopback(tmp_path: Path, host: str) -> None:
    cfg = names(tmp_path, f"enable = on\nresolver_endpoint = http://{host}:8000\nresolver_auth = bearer t0k\n")
    assert cfg.resolver_settings().authorization == "Bearer t0k"


@pytest.mark.parametrize("host", ["10.0.0.1", "resolver.example.com", "[::2]", "127.0.0.2"])
def test_plain_http_with_auth_elsewhere_refused(tmp_path: Path, host: str) -> None:
    message = error(tmp_path, f"enable = on\nresolver_endpoint = http://{host}:8000\nresolver_auth = bearer t\n")
    assert message.startswith("[NAMES] resolver_endpoint: http with resolver_auth on a non-loopback host")
    # https may carry it anywhere; http without auth too
    assert names(tmp_path, f"enable = on\nresolver_endpoint = https://{host}:8000\nresolver_auth = bearer t\n").enable
    assert names(tmp_path, f"enable = on\nresolver_endpoint = http://{host}:8000\n").enable


@pytest.mark.parametrize("value, header", [
    ("bearer abc", "Bearer abc"),
    ("BEARER abc", "Bearer abc"),
    ("Basic alice:s3cret", "Basic " + base64.b64encode(b"alice:s3cret").decode()),
    ("basic alice:", "Basic " + base64.b64encode(b"alice:").decode()),
    ("basic alice:a:b", "Basic " + base64.b64encode(b"alice:a:b").decode()),
])
def test_auth_forms(tmp_path: Path, value: str, header: str) -> None:
    assert names(tmp_path, f"resolver_auth = {value}\n").resolver_auth == header


@pytest.mark.parametrize("value, message", [
    ("token abc", "expected `bearer <token>` or `basic <user>:<password>`"),
    ("bearer", "expected `bearer <token>` or `basic <user>:<password>`"),
    ("bearer a b", "expected `bearer <token>` or `basic <user>:<password>`"),
    ("basic alice", "basic auth expects user:password"),
    ("basic :pw", "basic auth expects user:password"),
])
def test_auth_refused(tmp_path: Path, value: str, message: str) -> None:
    assert error(tmp_path, f"resolver_auth = {value}\n") == f"[NAMES] resolver_auth: {message}"


def test_auth_is_not_shown_in_repr(tmp_path: Path) -> None:
    cfg = names(tmp_path, "enable = on\nresolver_endpoint = https://r.example\nresolver_auth = bearer SECRET\n")
    assert "SECRET" not in repr(cfg) and "SECRET" not in repr(cfg.resolver_settings())


@pytest.mark.parametrize("key, low, high", [
    ("resolver_timeout_ms", 100, 60000),
    ("resolver_max_response_bytes", 1024, 16000),
])
def test_bounded_integers(tmp_path: Path, key: str, low: int, high: int) -> None:
    assert getattr(names(tmp_path, f"{key} = {low}\n"), key) == low
    assert getattr(names(tmp_path, f"{key} = {high}\n"), key) == high
    for bad in (low - 1, high + 1):
        assert error(tmp_path, f"{key} = {bad}\n") == f"[NAMES] {key}: must be between {low} and {high}, not {bad}"
    assert error(tmp_path, f"{key} = 3s\n") == f"[NAMES] {key}: must be a whole number, not '3s'"


def test_concurrency(tmp_path: Path) -> None:
    assert names(tmp_path, "resolver_concurrency = 1\n").resolver_concurrency == 1
    # 0 would make every RSLV wait forever (the reference does not check it)
    assert error(tmp_path, "resolver_concurrency = 0\n").startswith("[NAMES] resolver_concurrency: must be between 1")


def test_unknown_key_named(tmp_path: Path) -> None:
    assert "did you mean `resolver_timeout_ms`" in error(tmp_path, "resolver_timeout = 5\n")


def test_default_ini_has_the_section_off(tmp_path: Path) -> None:
    text = default_ini_text(hosts=["smp.example.com"])
    section = text[text.index("\n[NAMES]\n") + 1:].split("\n[", 1)[0]
    assert "\nenable = off\n" in section
    assert parse_config(text, tmp_path).names == NamesConfig()
    # every commented key of the section is a valid setting once uncommented
    lines = [line[2:] for line in section.splitlines() if line.startswith("# resolver_")]
    assert {line.split(" = ")[0] for line in lines} == {
        "resolver_endpoint", "resolver_auth", "resolver_timeout_ms", "resolver_max_response_bytes",
        "resolver_concurrency"}
    enabled = "\n".join(["[NAMES]", "enable = on", *[
        line.replace("<username>:<password>", "u:p") for line in lines if "example.com" not in line]])
    assert parse_config(enabled, tmp_path).names.enable
