"""Start-up failures as one line for the operator: what failed and how to fix it.

``explain(exc)`` turns an exception raised while starting (possibly wrapped in trio's
exception groups) into ``smpfast: error: ...``'s text, or None when it is not one we know.
"""

from __future__ import annotations

import errno
import ssl
from typing import Iterator

from smpfast.server.stats import StatsBackupError
from smpfast.store.errors import StoreError, StoreFormatError, StoreFullError

ROOT_OWNS_HINT = "run smpfast as the user that owns the server directory, or fix its owner (chown -R)"


class ListenError(OSError):
    """A listener could not be opened; carries what it was for."""

    def __init__(self, what: str, host: str | None, port: int, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.what = what  # "SMP", "control", "metrics" or "web"
        self.host = host
        self.port = port
        self.cause = cause


def leaf_exceptions(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside (nested) exception groups, in order."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaf_exceptions(inner)
    else:
        yield exc


def explain(exc: BaseException) -> str | None:
    """The one-line explanation of the first known failure in ``exc``, else None."""
    for leaf in leaf_exceptions(exc):
        message = _explain_one(leaf)
        if message is not None:
            return message
    return None


def _listen_message(e: ListenError) -> str:
    where = f"{e.host or '*'} port {e.port}"
    if e.what == "control":
        setting, option = "[TRANSPORT] control_port", "another control_port"
    elif e.what == "metrics":
        setting, option = "[PROMETHEUS] port", "another port"
    elif e.what == "web":
        setting, option = "[WEB] http / https", "another port"
    else:
        setting, option = "[TRANSPORT] port", "another port with `smpfast start --port N`"
    if e.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where} ({e.what}): the port is already in use (is another server "
            f"running?); stop it, or choose {option} or {setting} in smpfast.ini"
        )
    if e.errno in (errno.EACCES, errno.EPERM):
        return (
            f"cannot listen on {where} ({e.what}): permission denied (ports below 1024 need "
            "privileges); use a port from 1024 up, or grant CAP_NET_BIND_SERVICE (systemd: "
            "AmbientCapabilities=CAP_NET_BIND_SERVICE)"
        )
    if e.errno == errno.EADDRNOTAVAIL:
        return (
            f"cannot listen on {where} ({e.what}): {e.host} is not an address of this machine; "
            "set [TRANSPORT] bind (or `smpfast start --bind`) to one of its addresses, or :: "
            "for all interfaces"
        )
    if e.errno == errno.EAFNOSUPPORT:
        return (
            f"cannot listen on {where} ({e.what}): this address family (IPv6?) is disabled on "
            "this machine; set [TRANSPORT] bind = 0.0.0.0 (or `smpfast start --bind 0.0.0.0`)"
        )
    return f"cannot listen on {where} ({e.what}): {e.strerror}"


def _os_message(e: OSError) -> str | None:
    name = e.filename or "a file"
    if e.errno == errno.EROFS:
        return f"{name} is on a read-only file system; mount it read-write or use --dir on a writable disk"
    if e.errno == errno.ENOSPC:
        return f"no space left on the disk of {name}; free some space (or enlarge the disk) and start again"
    if e.errno == errno.EDQUOT:
        return f"disk quota exceeded writing {name}; free some space or raise the quota"
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied on {name}; {ROOT_OWNS_HINT}"
    if e.errno == errno.ENOTDIR:
        return f"{name}: part of this path is a file, not a directory; check --dir and [STORE] path"
    if e.errno == errno.EMFILE:
        return "too many open files; raise the limit (ulimit -n, systemd LimitNOFILE=)"
    return None


def _explain_one(e: BaseException) -> str | None:
    if isinstance(e, ListenError):
        return _listen_message(e)
    if isinstance(e, StatsBackupError):
        return f"{e}; move it away to start with new counts"
    if isinstance(e, StoreFormatError):
        return f"{e}; restore the store from a backup, or point [STORE] path at the right directory"
    if isinstance(e, StoreFullError):
        return f"{e}; free disk space or raise [STORE] map_size in smpfast.ini"
    if isinstance(e, StoreError):
        return f"{e}; check that [STORE] path is a writable directory on a disk with free space"
    if isinstance(e, ssl.SSLError):
        return (
            f"cannot load the server certificate and key (server.crt, server.key, ca.crt): "
            f"{e.reason or e}; restore them from a backup, or make new ones with `smpfast cert`"
        )
    if isinstance(e, OSError):
        return _os_message(e)
    return None
