"""Move a relay between the reference server (``smp-server``) and smpfast, both ways.

The reference keeps its state in two directories (its cfgPath and logPath):

- config: ``smp-server.ini``, ``ca.crt``, ``server.crt``, ``server.key``, ``fingerprint`` and,
  unless moved offline, ``ca.key`` -- the same credential files as smpfast's, so the CA
  fingerprint, and with it the server address, carries over unchanged;
- logs: ``smp-server-store.log`` (queues) and ``smp-server-messages.log`` (undelivered
  messages, written when the server stops on SIGINT, renamed to ``.bak`` when it starts).

:func:`import_reference` builds a new smpfast directory from them, :func:`export_reference`
writes them back from an smpfast directory. Service records (NEW_SERVICE) and the queues'
service associations (QUEUE_SERVICE, ``rsrv=``/``nsrv=``) go into the store, and back out.
Pending notifications (``smp-server-ntfs.log``) are not carried over: they expire within a day.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..config import (
    DEFAULT_PORT,
    Config,
    ConfigError,
    default_ini_text,
    load_config,
    parse_config,
    parse_hosts,
    parse_ports,
)
from ..credentials import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    FINGERPRINT_FILE,
    SERVER_CERT_FILE,
    SERVER_KEY_FILE,
    CredentialsError,
    load_identity,
    load_server_credentials,
)
from ..crypto.certs import CertError, common_name_of, encode_fingerprint, load_certificates_pem
from ..store import LMDBStore, Store, StoreError
from ..store.reference_log import (
    INI_FILE,
    MESSAGES_FILE,
    NTFS_FILE,
    STORE_LOG_FILE,
    CreateQueue,
    NewService,
    ReferenceFormatError,
    b64,
    decode_message_line,
    decode_store_log_line,
    encode_message_line,
    encode_store_log_record,
)
from .replay import MessageRestore, StoreLogReplay

DEFAULT_CONFIG_PATH = "/etc/opt/simplex"  # the reference's defaults and their variables
DEFAULT_LOG_PATH = "/var/opt/simplex"
CONFIG_PATH_ENV = "SMP_SERVER_CFG_PATH"
LOG_PATH_ENV = "SMP_SERVER_LOG_PATH"
COMPACTION_BACKUP = ".start"  # the reference's store log while it is being compacted
COMMIT_EVERY = 10_000  # writes per transaction while importing

# (file name, mode, required): the credentials, copied as they are.
CREDENTIAL_FILES = (
    (CA_CERT_FILE, 0o644, True),
    (SERVER_CERT_FILE, 0o644, True),
    (SERVER_KEY_FILE, 0o600, True),
    (FINGERPRINT_FILE, 0o644, True),
    (CA_KEY_FILE, 0o600, False),
)

Warn = Callable[[str], None]


class MigrationError(Exception):
    """Import or export cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class ReferencePaths:
    """The reference server's config and log directories."""

    config_dir: Path
    log_dir: Path

    @classmethod
    def from_env(cls, config_dir: str | None = None, log_dir: str | None = None) -> ReferencePaths:
        """Explicit paths, else the reference's variables, else its defaults."""
        return cls(
            Path(config_dir or os.environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH),
            Path(log_dir or os.environ.get(LOG_PATH_ENV) or DEFAULT_LOG_PATH),
        )

    @property
    def ini(self) -> Path:
        return self.config_dir / INI_FILE

    @property
    def store_log(self) -> Path:
        return self.log_dir / STORE_LOG_FILE

    @property
    def messages(self) -> Path:
        return self.log_dir / MESSAGES_FILE

    @property
    def notifications(self) -> Path:
        return self.log_dir / NTFS_FILE


@dataclass(frozen=True)
class ReferenceSettings:
    """What smpfast takes over from ``smp-server.ini``: what makes up the address."""

    hosts: tuple[str, ...] = ()
    ports: tuple[int, ...] = (DEFAULT_PORT,)
    create_password: str | None = None
    source_code: str | None = None
    store_queues: str = "memory"
    store_messages: str = "memory"


@dataclass
class Summary:
    queues: int = 0
    notifiers: int = 0
    messages: int = 0  # entries, quota markers included
    services: int = 0
    warnings: int = 0
    address: str = ""
    files: list[Path] = field(default_factory=list)


# --- reading the reference's files -------------------------------------------------------------


def read_reference_ini(path: Path) -> ReferenceSettings:
    """The settings of ``smp-server.ini`` smpfast needs; defaults if the file is absent."""
    if not path.exists():
        return ReferenceSettings()
    ini = configparser.ConfigParser(interpolation=None, strict=False, comment_prefixes=("#", ";"))
    try:
        ini.read_string(path.read_text(encoding="utf-8"), source=str(path))
    except (OSError, UnicodeDecodeError, configparser.Error) as e:
        raise MigrationError(f"cannot read {path}: {e}") from None

    def value(section: str, key: str) -> str | None:
        v = ini.get(section, key, fallback=None)
        return (v.strip() or None) if v is not None else None

    try:
        host = value("TRANSPORT", "host")
        hosts = parse_hosts(host) if host and host != "<hostnames>" else ()
        port = value("TRANSPORT", "port")
        ports = parse_ports(port) if port else (DEFAULT_PORT,)
    except ValueError as e:
        raise MigrationError(f"{path} [TRANSPORT]: {e}") from None
    return ReferenceSettings(
        hosts=hosts,
        ports=ports,
        create_password=value("AUTH", "create_password"),
        source_code=value("INFORMATION", "source_code"),
        store_queues=value("STORE_LOG", "store_queues") or "memory",
        store_messages=value("STORE_LOG", "store_messages") or "memory",
    )


def numbered_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(line number from 1, line without its newline, whether it is the last line)."""
    with open(path, "rb") as f:
        previous: bytes | None = None
        n = 0
        for raw in f:
            if previous is not None:
                yield n, previous, False
            n += 1
            previous = raw[:-1] if raw.endswith(b"\n") else raw
        if previous is not None:
            yield n, previous, True


def _store_log_to_read(ref: ReferencePaths, warn: Warn) -> Path:
    backup = ref.store_log.with_name(ref.store_log.name + COMPACTION_BACKUP)
    if backup.exists():
        # The reference restarts from this file too: the compaction that made it never ended.
        warn(f"{backup} exists (the reference server stopped while compacting its store log); importing it")
        return backup
    if ref.store_log.exists():
        return ref.store_log
    raise MigrationError(
        f"{ref.store_log} not found: give the reference's log directory with --log-path "
        "(the reference must run with [STORE_LOG] enable = on)"
    )


# --- import --------------------------------------------------------------------------------------


def import_reference(
    target: str | os.PathLike[str],
    ref: ReferencePaths,
    *,
    skip_warnings: bool = False,
    warn: Warn = lambda message: None,
) -> Summary:
    """Create smpfast directory ``target`` (missing or empty) from the reference's files.

    Store log records the reference would refuse are skipped with a warning, as it does. A
    message for a missing queue, an unreadable last message line or a missing message file
    stop the import unless ``skip_warnings`` (the reference's --skip-warnings). Any other
    unreadable line stops it, naming the file and line. On failure ``target`` is removed.
    """
    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise MigrationError(f"{target} already exists and is not empty; import into a new directory")
    settings = read_reference_ini(ref.ini)
    for mode_key, mode in (("store_queues", settings.store_queues), ("store_messages", settings.store_messages)):
        if mode != "memory":
            raise MigrationError(
                f"{ref.ini}: [STORE_LOG] {mode_key} = {mode}: export the reference's "
                "store to its store log and message file first (smp-server journal export / "
                "smp-server database export), then set it back to memory"
            )
    store_log = _store_log_to_read(ref, warn)
    if not ref.messages.exists():
        problem = (
            f"{ref.messages} not found: stop the reference server with SIGINT (docker stop "
            "sends it) so that it saves undelivered messages"
        )
        if not skip_warnings:
            raise MigrationError(problem + ", or pass --skip-warnings to import the queues only")
        warn(problem + "; importing the queues only")
    existed = target.exists()
    target.mkdir(parents=True, exist_ok=True)
    try:
        summary = _import_into(target, ref, settings, store_log, skip_warnings, warn)
    except BaseException:
        if existed:
            for child in target.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(target, ignore_errors=True)
        raise
    return summary


def _import_into(
    target: Path,
    ref: ReferencePaths,
    settings: ReferenceSettings,
    store_log: Path,
    skip_warnings: bool,
    warn: Warn,
) -> Summary:
    summary = Summary()

    def warning(message: str) -> None:
        summary.warnings += 1
        warn(message)

    fingerprint = _copy_credentials(ref.config_dir, target)
    config = _write_ini(target, settings)
    if ref.notifications.exists() and ref.notifications.stat().st_size:
        warning(f"{ref.notifications}: pending notifications are not imported (they expire within a day)")
    store = LMDBStore(
        str(config.store.path),
        map_size=config.store.map_size,
        map_size_max=config.store.map_size_max,
        durability=config.store.durability,
    )
    try:
        replay = StoreLogReplay(store)
        for n, line, _ in numbered_lines(store_log):
            try:
                rec = decode_store_log_line(line)
            except ReferenceFormatError as e:
                raise MigrationError(f"{store_log} line {n}: {e}") from None
            problem = _apply(store, lambda: replay.apply(rec), store_log, n)
            if problem:
                warning(f"{store_log} line {n}: {problem}")
        if ref.messages.exists():
            _restore_messages(store, ref.messages, skip_warnings, warning)
        store.commit()
        store.sync()
        summary.queues = store.queue_count()
        summary.notifiers = store.notifier_count()
        summary.messages = store.stored_message_count()
        summary.services = replay.services
    except StoreError as e:
        raise MigrationError(f"store {config.store.path}: {e}") from None
    finally:
        store.close()
    summary.address = config.address(fingerprint)
    return summary


def _apply(store: Store, step: Callable[[], str | None], path: Path, n: int) -> str | None:
    try:
        problem = step()
    except ReferenceFormatError as e:
        raise MigrationError(f"{path} line {n}: {e}") from None
    except StoreError as e:
        raise MigrationError(f"{path} line {n}: {e}") from None
    if store.uncommitted_writes >= COMMIT_EVERY:
        store.commit()
    return problem


def _restore_messages(store: Store, path: Path, skip_warnings: bool, warning: Warn) -> None:
    restore = MessageRestore(store)
    for n, line, last in numbered_lines(path):
        try:
            rid, msg = decode_message_line(line)
        except ReferenceFormatError as e:
            # The reference tolerates only an unreadable last line (a write cut short).
            if last and skip_warnings:
                warning(f"{path} line {n}: {e}; skipped")
                continue
            hint = " (pass --skip-warnings to skip it)" if last else ""
            raise MigrationError(f"{path} line {n}: {e}{hint}") from None
        problem = _apply(store, lambda: restore.add(rid, msg), path, n)
        if problem is None:
            continue
        if problem.endswith("does not exist") and not skip_warnings:
            raise MigrationError(f"{path} line {n}: {problem} (pass --skip-warnings to skip such messages)")
        warning(f"{path} line {n}: {problem}")
    for problem in restore.finish():
        warning(f"{path}: {problem}")


def _copy_credentials(config_dir: Path, target: Path) -> str:
    """Copy the credential files; returns the fingerprint (checked against ca.crt)."""
    missing = [name for name, _, required in CREDENTIAL_FILES if required and not (config_dir / name).exists()]
    if missing:
        raise MigrationError(
            f"{', '.join(missing)} not found in {config_dir}: give the reference's config "
            "directory with --config-path"
        )
    for name, mode, _ in CREDENTIAL_FILES:
        source = config_dir / name
        if not source.exists():
            continue
        try:
            data = source.read_bytes()
        except OSError as e:
            raise MigrationError(f"cannot read {source}: {e.strerror}") from None
        fd = os.open(target / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    try:
        creds = load_server_credentials(target)
    except CredentialsError as e:
        raise MigrationError(f"the reference's credentials in {config_dir}: {e}") from None
    return creds.fingerprint


def _write_ini(target: Path, settings: ReferenceSettings) -> Config:
    hosts = settings.hosts or (_certificate_host(target),)
    # Like init: a loopback-only server listens on loopback, any other on every interface.
    bind = hosts[0] if all(_is_loopback(h) for h in hosts) else "::"
    text = default_ini_text(
        hosts=hosts,
        ports=settings.ports,
        bind=bind,
        create_password=settings.create_password,
        source_code=settings.source_code,
    )
    try:
        config = parse_config(text, target)
    except ConfigError as e:
        raise MigrationError(f"the reference's settings do not fit smpfast.ini: {e}") from None
    fd = os.open(config.ini_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return config


def _certificate_host(directory: Path) -> str:
    try:
        return common_name_of(load_certificates_pem((directory / SERVER_CERT_FILE).read_bytes())[0])
    except (CertError, OSError) as e:
        raise MigrationError(f"no [TRANSPORT] host in the reference's INI and no usable server certificate: {e}") from None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# --- export --------------------------------------------------------------------------------------


def export_reference(source: str | os.PathLike[str], ref: ReferencePaths, *, warn: Warn = lambda m: None) -> Summary:
    """Write the reference's files for smpfast directory ``source`` (its server stopped).

    Writes the credentials, ``smp-server.ini`` (unless one exists), the store log as the
    reference compacts it (services, then one CREATE per queue) and the message file.
    Refuses to overwrite credentials, a store log or a message file."""
    try:
        config = load_config(source)
        fingerprint = encode_fingerprint(load_identity(config.config_dir))
    except (ConfigError, CredentialsError) as e:
        raise MigrationError(str(e)) from None
    if not config.store.path.is_dir():
        raise MigrationError(f"store {config.store.path} not found")
    outputs = [ref.config_dir / name for name, _, _ in CREDENTIAL_FILES] + [ref.store_log, ref.messages]
    existing = [str(p) for p in outputs if p.exists()]
    if existing:
        raise MigrationError(f"refusing to overwrite {', '.join(existing)}")
    summary = Summary(address=config.address(fingerprint))
    for d in (ref.config_dir, ref.log_dir):
        d.mkdir(parents=True, exist_ok=True)
    store = LMDBStore(str(config.store.path), map_size=config.store.map_size, durability="none")
    try:
        with _Output(ref.store_log) as log_out, _Output(ref.messages) as msg_out:
            for s in store.iter_services():
                log_out.write(encode_store_log_record(NewService(s)) + b"\n")
                summary.services += 1
            for q in store.iter_queues():
                try:
                    log_out.write(encode_store_log_record(CreateQueue(q)) + b"\n")
                    for msg in store.queue_messages(q.recipient_id):
                        msg_out.write(encode_message_line(q.recipient_id, msg) + b"\n")
                        summary.messages += 1
                except ReferenceFormatError as e:
                    rid = b64(q.recipient_id).decode("ascii")
                    raise MigrationError(f"queue {rid} cannot be written in the reference's format: {e}") from None
                summary.queues += 1
                summary.notifiers += q.notifier is not None
    except StoreError as e:
        raise MigrationError(f"store {config.store.path}: {e}") from None
    finally:
        store.close()
    for name, mode, _ in CREDENTIAL_FILES:
        path = config.config_dir / name
        if path.exists():
            _write_new(ref.config_dir / name, path.read_bytes(), mode)
    summary.files = [ref.store_log, ref.messages]
    if ref.ini.exists():
        warn(f"{ref.ini} exists and was kept: check that its [TRANSPORT] and [AUTH] match {config.ini_path}")
    else:
        _write_new(ref.ini, reference_ini_text(config).encode("utf-8"), 0o600)
        summary.files.append(ref.ini)
    return summary


class _Output:
    """A file written under a temporary name, fsynced and renamed into place on success."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")

    def __enter__(self):
        self.f = open(self.tmp, "wb")
        return self.f

    def __exit__(self, exc_type, *exc: object) -> None:
        try:
            if exc_type is None:
                self.f.flush()
                os.fsync(self.f.fileno())
        finally:
            self.f.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.fchmod(fd, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def reference_ini_text(config: Config) -> str:
    """A minimal ``smp-server.ini`` with the settings smpfast shares with the reference."""
    t, a, s, ic = config.transport, config.auth, config.store_log, config.inactive_clients
    lines = [
        "# Written by `smpfast export`: the settings smpfast and smp-server share.",
        "# Review it, and add what else your smp-server needs (see `smp-server init`).",
        "",
        "[STORE_LOG]",
        "enable = on",
        "restore_messages = on",
        f"expire_messages_days = {s.expire_messages_days}",
        f"expire_messages_on_start = {_on_off(s.expire_messages_on_start)}",
        f"expire_messages_on_send = {_on_off(s.expire_messages_on_send)}",
        f"expire_ntfs_hours = {s.expire_ntfs_hours}",
        f"log_stats = {_on_off(s.log_stats)}",
        "",
        "[AUTH]",
        f"new_queues = {_on_off(a.new_queues)}",
    ]
    if a.create_password is not None:
        lines.append(f"create_password = {a.create_password}")
    lines += ["", "[TRANSPORT]"]
    if t.host:
        lines.append(f"host = {','.join(t.host)}")
    lines += [
        f"port = {','.join(str(p) for p in t.port)}",
        f"log_tls_errors = {_on_off(t.log_tls_errors)}",
        "websockets = off",
        "",
        "[INACTIVE_CLIENTS]",
        f"disconnect = {_on_off(ic.disconnect)}",
        f"ttl = {ic.ttl}",
        f"check_interval = {ic.check_interval}",
    ]
    if config.information is not None:
        lines += ["", "[INFORMATION]", f"source_code = {config.information.source_code}"]
    return "\n".join(lines) + "\n"
