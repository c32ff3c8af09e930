"""The ``smpfast`` command.

Each subcommand is one registration: a function adding its arguments and a function running
it (returning the exit code), registered with :func:`subcommand`.  To add one::

    def _load_args(p: argparse.ArgumentParser) -> None: ...

    @subcommand("load", "run the load generator", _load_args)
    def _load(args: argparse.Namespace) -> int:
        from smpfast.load.main import run   # import lazily: keeps `smpfast --help` fast
        return run(args)
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import importlib.util
import ipaddress
import os
import secrets
import shutil
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TextIO

import smpfast
from smpfast.usage import CliError
from smpfast.config import (
    DEFAULT_BIND,
    DEFAULT_PORT,
    INI_FILE,
    Config,
    ConfigError,
    default_ini_text,
    load_config,
    parse_config,
    parse_hosts,
    parse_ports,
    validate_basic_auth,
)
from smpfast.credentials import (
    CredentialsError,
    create_credentials,
    load_identity,
    renew_server_certificate,
)
from smpfast.crypto.certs import SignAlgorithm, encode_fingerprint
from smpfast.startup_errors import explain, leaf_exceptions
from smpfast.server.admin import DEFAULT_CONTROL_PORT
from smpfast.transport.socks import SocksProxy, parse_socks_proxy

DEFAULT_DIR = "smpfast-data"
RANDOM_PASSWORD_BYTES = 32
CONTROL_PASSWORD_BYTES = 18


# --- subcommand registry ----------------------------------------------------------------------


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


SUBCOMMANDS: dict[str, Subcommand] = {}


def subcommand(
    name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    def register(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        SUBCOMMANDS[name] = Subcommand(name, help, add_arguments, run)
        return run

    return register


def _add_dir_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dir",
        default=DEFAULT_DIR,
        help=f"server directory: configuration, keys and store (default: ./{DEFAULT_DIR})",
    )


# --- init -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InitResult:
    config: Config
    fingerprint: str
    address: str


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def make_password(option: str) -> str | None:
    """``random`` (32 random bytes, base64url as the reference), ``none``, or the value itself."""
    if option == "random":
        return base64.urlsafe_b64encode(secrets.token_bytes(RANDOM_PASSWORD_BYTES)).decode("ascii")
    if option == "none":
        return None
    try:
        return validate_basic_auth(option)
    except ValueError as e:
        raise CliError(f"--password: {e}") from None


def make_control_password() -> str:
    """A control-port password as the reference's init makes them: 18 random bytes, base64url."""
    return base64.urlsafe_b64encode(secrets.token_bytes(CONTROL_PASSWORD_BYTES)).decode("ascii")


def _control_port(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a TCP port (1-65535)")
    return int(value)


def _create_store(config: Config) -> None:
    """Create the LMDB store directory (through the store itself once it exists)."""
    if importlib.util.find_spec("smpfast.store.lmdb") is None:
        config.store.path.mkdir(parents=True, exist_ok=True)
        return
    from smpfast.store.lmdb import LMDBStore

    config.store.path.mkdir(parents=True, exist_ok=True)
    store = LMDBStore(
        str(config.store.path), map_size=config.store.map_size, map_size_max=config.store.map_size_max, durability=config.store.durability
    )
    store.close()


def initialize(
    directory: str | os.PathLike[str],
    *,
    ip: str = DEFAULT_BIND,
    fqdn: str | None = None,
    ports: Sequence[int] = (DEFAULT_PORT,),
    password: str | None = None,
    algorithm: SignAlgorithm = SignAlgorithm.ED25519,
    control_port: int | None = None,
    bind: str | None = None,
    socks_proxy: str | None = None,
    own_domains: Sequence[str] = (),
) -> InitResult:
    """Create a server directory: credentials, ``smpfast.ini``, ``fingerprint``, store.

    Refuses a directory that exists and is not empty.  On failure, removes what it created.
    """
    target = Path(directory)
    if target.exists() and not _is_empty_dir(target):
        raise CliError(f"{target} already exists and is not empty; refusing to overwrite it")
    try:
        ips = parse_hosts(ip)
        ip_addrs = [ipaddress.ip_address(h.strip("[]")) for h in ips]
    except ValueError:
        raise CliError(f"--ip: {ip!r} is not an IP address or a comma-separated list of them") from None
    try:
        hosts = parse_hosts(fqdn) if fqdn else ips
    except ValueError as e:
        raise CliError(f"--fqdn: {e}") from None
    if bind is None:
        # Like the reference, a public --ip names the server (certificate, address) and the
        # server listens on all interfaces: behind NAT the public IP is not on any interface.
        public = any(not a.is_loopback for a in ip_addrs)
        bind = "::" if public else str(ip_addrs[0])
    else:
        try:
            ipaddress.ip_address(bind)
        except ValueError:
            raise CliError(f"--bind: {bind!r} is not an IP address (such as ::, 0.0.0.0 or 127.0.0.1)") from None
    if socks_proxy is not None:
        try:
            socks_proxy = str(parse_socks_proxy(socks_proxy))
        except ValueError as e:
            raise CliError(f"--socks-proxy: {e}") from None
    control_passwords = None
    if control_port is not None:
        control_passwords = (make_control_password(), make_control_password())
    ini_text = default_ini_text(
        hosts=hosts, ports=ports, bind=bind, create_password=password,
        control_port=control_port, control_passwords=control_passwords,
        socks_proxy=socks_proxy, own_domains=own_domains,
    )

    existed = target.exists()
    target.mkdir(parents=True, exist_ok=True)
    try:
        config = parse_config(ini_text, target)  # the text we write must load back
        identity = create_credentials(target, common_name=hosts[0], algorithm=algorithm)
        ini_fd = os.open(config.ini_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(ini_fd, "w", encoding="utf-8") as f:
            f.write(ini_text)
        _create_store(config)
    except BaseException:
        if existed:
            for child in target.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(target, ignore_errors=True)
        raise
    fingerprint = encode_fingerprint(identity)
    return InitResult(config, fingerprint, config.address(fingerprint))


def _init_args(p: argparse.ArgumentParser) -> None:
    _add_dir_argument(p)
    p.add_argument(
        "--ip",
        default=DEFAULT_BIND,
        help="server IP address(es), comma-separated (e.g. 203.0.113.5,2001:db8::5), used in "
        "the certificate (the first) and the address unless --fqdn is given; a non-loopback "
        f"address also makes the server listen on all interfaces (default: {DEFAULT_BIND})",
    )
    p.add_argument(
        "--fqdn", help="server host name(s), comma-separated; the first is the certificate CN"
    )
    p.add_argument(
        "--bind",
        help="listen address written to [TRANSPORT] bind (default: :: for a public --ip, "
        "else the --ip itself)",
    )
    p.add_argument(
        "--port",
        default=str(DEFAULT_PORT),
        help=f"TCP port(s) to serve, comma-separated (default: {DEFAULT_PORT})",
    )
    p.add_argument(
        "--password",
        default="random",
        metavar="random|none|VALUE",
        help="password to create queues: random (default), none, or the password itself",
    )
    p.add_argument(
        "--sign-algorithm",
        "-a",
        default="ED25519",
        choices=[a.value for a in SignAlgorithm],
        type=str.upper,
        help="signature algorithm of the certificates (default: ED25519)",
    )
    p.add_argument(
        "--control-port",
        nargs="?",
        const=DEFAULT_CONTROL_PORT,
        default=None,
        type=_control_port,
        metavar="PORT",
        help=f"enable the control port on 127.0.0.1 (default port {DEFAULT_CONTROL_PORT}) with "
        "random admin and user passwords",
    )
    p.add_argument(
        "--socks-proxy",
        nargs="?",
        const=str(SocksProxy()),
        default=None,
        metavar="PROXY",
        help="SOCKS5 proxy ([user:pass@]IP[:port], default 127.0.0.1:9050) for the connections "
        "to .onion relays of messages this server forwards as a proxy",
    )
    p.add_argument("--own-domains", metavar="DOMAINS",
                   help="domain names of the relays you operate, comma-separated (proxy statistics)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


def _confirm(prompt: str) -> bool:
    print(prompt + " Continue (Y/n): ", end="", flush=True)
    return sys.stdin.readline().strip() in ("", "y", "Y")


@subcommand("init", "create a new server (keys, certificates, smpfast.ini, store)", _init_args)
def _cmd_init(args: argparse.Namespace) -> int:
    try:
        ports = parse_ports(args.port)
    except ValueError as e:
        raise CliError(f"--port: {e}") from None
    password = make_password(args.password)
    if not args.yes and sys.stdin is not None and sys.stdin.isatty():
        if not _confirm(f"A new SMP server identity will be created in {args.dir}."):
            print("Server not initialised.")
            return 1
    result = initialize(
        args.dir,
        ip=args.ip,
        fqdn=args.fqdn,
        ports=ports,
        password=password,
        algorithm=SignAlgorithm.parse(args.sign_algorithm),
        control_port=args.control_port,
        bind=args.bind,
        socks_proxy=args.socks_proxy,
        own_domains=tuple(d.strip() for d in args.own_domains.split(",") if d.strip()) if args.own_domains else (),
    )
    _print_init_report(result)
    return 0


def _print_init_report(result: InitResult, out: TextIO | None = None, *, starting: bool = False) -> None:
    """What init made; ``starting``: `start` prints the address itself once it listens."""
    out = out or sys.stdout
    cfg = result.config
    print(f"smpfast server initialised in {cfg.config_dir}", file=out)
    print(f"Configuration: {cfg.ini_path}", file=out)
    bind = cfg.transport.bind
    if ipaddress.ip_address(bind).is_loopback:
        print(
            f"The server listens on {bind} only; set [TRANSPORT] bind = :: in "
            f"{INI_FILE} to accept connections from other machines.",
            file=out,
        )
    elif ipaddress.ip_address(bind).is_unspecified:
        print(
            f"The server listens on all interfaces ([TRANSPORT] bind = {bind}); the address "
            f"{', '.join(cfg.transport.host)} is only used in the certificate and the server "
            f"address. Set bind in {INI_FILE} (or init --bind) to listen on one address only.",
            file=out,
        )
    else:
        print(f"The server listens on {bind} only ([TRANSPORT] bind in {INI_FILE}).", file=out)
    print("----------", file=out)
    print(
        "Move the CA private key to secure offline storage and delete it from this machine:\n"
        f"  {cfg.files.ca_key}\n"
        "It is needed only to sign a new server certificate (`smpfast cert`) that keeps the\n"
        "same identity and address, e.g. if the server key is ever compromised.",
        file=out,
    )
    if cfg.transport.control_port is not None:
        print(
            f"Control port: 127.0.0.1:{cfg.transport.control_port} (admin and user passwords in "
            f"[AUTH] of {INI_FILE})",
            file=out,
        )
    print("----------", file=out)
    if starting:
        print(f"Fingerprint: {result.fingerprint}", file=out)
        return
    print(f"Start the server with: smpfast start --dir {cfg.config_dir}", file=out)
    print(f"Fingerprint: {result.fingerprint}", file=out)
    print("Server address:", file=out)
    print(result.address, file=out)


# --- address ----------------------------------------------------------------------------------


def _address_of(directory: str | os.PathLike[str]) -> tuple[Config, str]:
    config = load_config(directory)
    fingerprint = encode_fingerprint(load_identity(config.config_dir))
    return config, config.address(fingerprint)


@subcommand("address", "print the server address", _add_dir_argument)
def _cmd_address(args: argparse.Namespace) -> int:
    _, address = _address_of(args.dir)
    print(address)
    return 0


# --- info -------------------------------------------------------------------------------------


@subcommand("info", "print the server's public information ([INFORMATION]) and address", _add_dir_argument)
def _cmd_info(args: argparse.Namespace) -> int:
    from smpfast.server.web import information_rows  # lazily: pulls in h11 and trio

    config, address = _address_of(args.dir)
    print(f"Server address: {address}")
    rows = information_rows(config.information)
    if not rows:
        print(f"No public information: set [INFORMATION] source_code in {config.ini_path} to publish it.")
    width = max((len(label) for label, _ in rows), default=0)
    for label, value in rows:
        print(f"{label + ':':<{width + 1}} {value}")
    web = config.web
    if web is not None:
        where = [f"{name} port {port}" for name, port in (("HTTP", web.http), ("HTTPS", web.https)) if port]
        served = f", served on {' and '.join(where)}" if where else " (not served: set [WEB] http or https)"
        print(f"Information page: {web.static_path / 'index.html'}{served}")
    return 0


# --- cert -------------------------------------------------------------------------------------


def _cert_args(p: argparse.ArgumentParser) -> None:
    _add_dir_argument(p)
    p.add_argument(
        "--sign-algorithm",
        "-a",
        choices=[a.value for a in SignAlgorithm],
        type=str.upper,
        help="algorithm of the new certificate (default: that of the current one)",
    )
    p.add_argument("--cn", help="common name of the new certificate (default: the current one)")


@subcommand("cert", "new server key and certificate signed by the CA (needs ca.key)", _cert_args)
def _cmd_cert(args: argparse.Namespace) -> int:
    load_config(args.dir)  # only for a configured server
    alg = SignAlgorithm.parse(args.sign_algorithm) if args.sign_algorithm else None
    cn, alg = renew_server_certificate(args.dir, common_name=args.cn, algorithm=alg)
    print(f"New server certificate for {cn} ({alg.value}) in {Path(args.dir) / 'server.crt'}")
    print("The server identity and address are unchanged; restart the server to use it.")
    print(f"Move the CA private key back offline: {Path(args.dir) / 'ca.key'}")
    return 0


# --- start ------------------------------------------------------------------------------------


def ensure_initialized(directory: str | os.PathLike[str], *, allowed: bool = True) -> InitResult | None:
    """Initialise ``directory`` with defaults if it is missing or empty (so `start` just works).

    Returns the init result when it did, None when the directory was already there.  With
    ``allowed`` False a missing or empty directory is an error (a mistyped --dir must not
    become a new server with a new identity).
    """
    target = Path(directory)
    if target.exists() and not _is_empty_dir(target):
        return None
    if not allowed:
        state = "is empty" if target.exists() else "does not exist"
        raise CliError(
            f"{target} {state}: check --dir, or create a new server there with "
            f"`smpfast init --dir {target}` (or `smpfast start --init --dir {target}`)"
        )
    print(f"smpfast: {target} is missing or empty, initialising a new server there", file=sys.stderr)
    result = initialize(target, password=make_password("random"))
    _print_init_report(result, out=sys.stderr, starting=True)
    return result


def _start_args(p: argparse.ArgumentParser) -> None:
    _add_dir_argument(p)
    p.add_argument(
        "--init",
        action="store_true",
        help=f"initialise --dir if it is missing or empty (always done for the default ./{DEFAULT_DIR})",
    )
    p.add_argument("--port", help="TCP port(s) to serve, comma-separated (overrides [TRANSPORT] port)")
    p.add_argument("--bind", help="listen address (overrides [TRANSPORT] bind), e.g. :: or 127.0.0.1")
    p.add_argument("--workers", type=int, metavar="N",
                   help="worker processes (overrides [TRANSPORT] workers; 1: a single process)")


def _start_overrides(config: Config, args: argparse.Namespace) -> Config:
    changes: dict[str, object] = {}
    if args.port is not None:
        try:
            changes["port"] = parse_ports(args.port)
        except ValueError as e:
            raise CliError(f"--port: {e}") from None
    if args.bind is not None:
        try:
            changes["bind"] = str(ipaddress.ip_address(args.bind))
        except ValueError:
            raise CliError(f"--bind: {args.bind!r} is not an IP address (such as ::, 0.0.0.0 or 127.0.0.1)") from None
    if getattr(args, "workers", None) is not None:
        if not 1 <= args.workers <= 256:
            raise CliError(f"--workers: {args.workers} is not between 1 and 256")
        changes["workers"] = args.workers
    if not changes:
        return config
    return dataclasses.replace(config, transport=dataclasses.replace(config.transport, **changes))


@subcommand("start", f"run the server in the foreground (initialises ./{DEFAULT_DIR} or, with --init, --dir)", _start_args)
def _cmd_start(args: argparse.Namespace) -> int:
    ensure_initialized(args.dir, allowed=args.init or args.dir == DEFAULT_DIR)
    config = _start_overrides(load_config(args.dir), args)
    from smpfast.server.main import run  # lazily: the server pulls in trio and the store

    return run(config, debug=args.debug)


# --- import / export (migration from and to the reference server) -----------------------------

MAX_WARNINGS_SHOWN = 20


def _reference_path_args(p: argparse.ArgumentParser, verb: str) -> None:
    p.add_argument(
        "--config-path",
        help=f"the reference server's config directory to {verb} (ca.crt, server.key, "
        "smp-server.ini...; default: $SMP_SERVER_CFG_PATH or /etc/opt/simplex)",
    )
    p.add_argument(
        "--log-path",
        help=f"the reference server's log directory to {verb} (smp-server-store.log, "
        "smp-server-messages.log; default: $SMP_SERVER_LOG_PATH or /var/opt/simplex)",
    )


def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dir",
        default=DEFAULT_DIR,
        help=f"the new smpfast server directory, missing or empty (default: ./{DEFAULT_DIR})",
    )
    _reference_path_args(p, "read")
    p.add_argument(
        "--skip-warnings",
        action="store_true",
        help="go on past messages for missing queues, an unreadable last message line or a "
        "missing message file (as smp-server start --skip-warnings)",
    )


class _Warnings:
    """Prints the first warnings, counts the rest."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, message: str) -> None:
        self.count += 1
        if self.count <= MAX_WARNINGS_SHOWN:
            print(f"smpfast: warning: {message}", file=sys.stderr)

    def close(self) -> None:
        if self.count > MAX_WARNINGS_SHOWN:
            print(f"smpfast: {self.count - MAX_WARNINGS_SHOWN} more warnings not shown", file=sys.stderr)


@subcommand("import", "create a server from a reference smp-server's files (same address)", _import_args)
def _cmd_import(args: argparse.Namespace) -> int:
    from smpfast.migration.reference import MigrationError, ReferencePaths, import_reference

    ref = ReferencePaths.from_env(args.config_path, args.log_path)
    warnings = _Warnings()
    try:
        summary = import_reference(args.dir, ref, skip_warnings=args.skip_warnings, warn=warnings)
    except MigrationError as e:
        raise CliError(str(e)) from None
    finally:
        warnings.close()
    print(
        f"Imported {summary.queues} queues ({summary.notifiers} with notifications) and "
        f"{summary.messages} undelivered messages into {args.dir}"
        + (f", {summary.warnings} warnings" if summary.warnings else "")
    )
    print(f"Start the server with: smpfast start --dir {args.dir}")
    print("Server address (unchanged):")
    print(summary.address)
    return 0


def _export_args(p: argparse.ArgumentParser) -> None:
    _add_dir_argument(p)
    _reference_path_args(p, "write")


@subcommand("export", "write a stopped server's state as a reference smp-server's files", _export_args)
def _cmd_export(args: argparse.Namespace) -> int:
    from smpfast.migration.reference import MigrationError, ReferencePaths, export_reference

    ref = ReferencePaths.from_env(args.config_path, args.log_path)
    warnings = _Warnings()
    try:
        summary = export_reference(args.dir, ref, warn=warnings)
    except MigrationError as e:
        raise CliError(str(e)) from None
    finally:
        warnings.close()
    print(
        f"Exported {summary.queues} queues ({summary.notifiers} with notifications) and "
        f"{summary.messages} undelivered messages to {ref.config_dir} and {ref.log_dir}"
    )
    print("Server address (unchanged):")
    print(summary.address)
    return 0


# --- traffic ----------------------------------------------------------------------------------


def _traffic_args(p: argparse.ArgumentParser) -> None:
    from smpfast.traffic.cli import add_arguments  # argparse only: keeps --help fast

    add_arguments(p)


@subcommand("traffic", "measure SMP's traffic reduction from batching (blocks and bytes)", _traffic_args)
def _cmd_traffic(args: argparse.Namespace) -> int:
    from smpfast.traffic.cli import run

    return run(args)


# --- load -------------------------------------------------------------------------------------

from smpfast.load.options import HELP as _LOAD_HELP, add_arguments as _load_args  # noqa: E402


@subcommand("load", _LOAD_HELP, _load_args)
def _cmd_load(args: argparse.Namespace) -> int:
    from smpfast.load.main import run  # lazily: the load generator pulls in trio and the client

    return run(args)


# --- main -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smpfast", description="SimpleX Messaging Protocol (SMP) relay server"
    )
    parser.add_argument("--version", "-v", action="version", version=f"smpfast {smpfast.__version__}")
    debug_help = "on failure show the traceback too; the server logs at debug level"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in SUBCOMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        # Also accepted after the command; SUPPRESS keeps a --debug given before it.
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
        p.set_defaults(_run=cmd.run)
    return parser


def _is_interrupt(e: BaseException) -> bool:
    return any(isinstance(leaf, KeyboardInterrupt) for leaf in leaf_exceptions(e))


def _unexpected(e: BaseException) -> str:
    leaf = next((x for x in leaf_exceptions(e) if isinstance(x, Exception)), e)
    return (
        f"unexpected {type(leaf).__name__}: {leaf}; run again with --debug for the traceback "
        "and please report it"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args._run(args)
    except (CliError, ConfigError, CredentialsError) as e:
        if args.debug:
            traceback.print_exc()
        print(f"smpfast: error: {e}", file=sys.stderr)
        return 1
    except (Exception, BaseExceptionGroup) as e:  # noqa: B902  # anything else: still one line
        if _is_interrupt(e):
            return 130
        if args.debug:
            traceback.print_exc()
        message = explain(e) or _unexpected(e)
        print(f"smpfast: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
