"""LMDBStore: the Store interface on one LMDB environment (py-lmdb).

Named databases:
  queues     recipient id -> queue record (records.py layout)
  senders    sender id -> recipient id
  notifiers  notifier id -> recipient id
  links      link id -> recipient id
  messages   u8 len(rid) || rid || u64 BE seq -> message record (records.py layout)
  qstate     recipient id -> queue state, only while the queue holds messages:
             u8 version (1), u8 flags (bit 0: over quota), u64 head seq, u64 tail seq
             (entries = tail - head; the head message is at seq head)
  meta       b"format" -> u32 BE store format version
  services   service id -> service record (records.py layout)
  service_certs  certificate hash -> service id
  service_queues u8 len(service id) || service id || party ('R'|'N') || queue id -> b""
             (the associations held in queue records: rcv_service_id / ntf_service_id)
  service_subs   u8 len(service id) || service id || party -> u64 BE count || IdsHash (16)
             of that service's associated ids (absent: none), written in the same
             transaction as each association change, so SUBS/NSUBS answer with one read

Opening is a memory map plus a few fixed reads: no scan, so start-up time does not depend on
the number of queues or messages. The environment runs with sync=False/metasync=False: commit()
writes pages to the OS without fsync (a process crash loses nothing committed), and sync()
fsyncs everything committed so far (needed against power loss / kernel crash).

writemap is off by default, although it is faster (bench/test_bench_store.py, write + peek +
delete per message with 100 per commit: 100-byte bodies 7.3 -> 6.7 us, 16 KB bodies 15.6 ->
9.0 us), because with it (a) data.mdb becomes a sparse file of the full map size and a full
disk kills the process with SIGBUS instead of failing one write with ENOSPC, and (b) LMDB
documents that with sync off, transactions stay atomic and consistent across an OS crash only
without writemap and on a filesystem that keeps write order; with writemap the kernel may write
the meta page before the pages it points to. So without writemap, a power loss between commit
and sync loses the unsynced transactions (never acknowledged: the broker answers after sync).

``shared=True`` (worker processes on one environment): LMDB has one writer at a time across
processes, so a write transaction must not stay open between blocks. Each write unit is then
its own LMDB transaction, begun at the unit's first read or write (its reads see the latest
commit of every process, under the writer lock) and committed at its end without fsync;
reads outside units use a new read-only transaction at every call. The group commit
keeps its meaning, as fsync: a unit counts as a write even when it only read (it may have
shown another process's commit that is not yet durable), so its answers wait for the next
sync, which makes every commit before it durable.
"""

from __future__ import annotations

import functools
import logging
import os
import struct
import threading
from collections.abc import Callable
from typing import TypeVar

import lmdb

from ..protocol.ids_hash import NO_SERVICE_SUBS, ServiceSubs, queue_id_hash, xor_hashes
from .base import DEFAULT_QUOTA, Store, WriteResult
from .errors import (
    DuplicateIdError,
    QueueNotFound,
    RecordError,
    StoreError,
    StoreFormatError,
    StoreFullError,
    StoreUsageError,
)
from .records import (
    SERVICE_NOTIFIER,
    SERVICE_RECIPIENT,
    TYPICAL_QUEUE_RECORD,
    QueueRecord,
    ServiceRecord,
    StoredMessage,
    decode_message,
    decode_queue,
    decode_service,
    encode_message,
    encode_queue,
    encode_service,
    message_meta,
    queue_services,
    quota_marker,
)

STORE_FORMAT = 1
DEFAULT_MAP_SIZE = 8 << 30  # 8 GiB of address space; the file grows only as data is written

log = logging.getLogger(__name__)
_R = TypeVar("_R")


def _engine_call(method: Callable[..., _R]) -> Callable[..., _R]:
    """Run a store method so that an engine failure aborts the current write unit (or the
    batch) and surfaces as StoreError; usage errors pass through, the batch intact."""

    @functools.wraps(method)
    def call(self: "LMDBStore", *args: object, **kwargs: object) -> _R:
        try:
            return method(self, *args, **kwargs)
        except StoreUsageError:
            raise
        except BaseException as e:
            self._fail(e)
            raise  # _fail raises; this keeps type checkers informed
        finally:
            if self._read is not None:
                # Shared: a snapshot kept open would keep every later commit of every
                # process from reusing pages (the file would grow): end it with the call.
                self._drop_read()

    return call

_DB_NAMES = (
    b"queues", b"senders", b"notifiers", b"links", b"messages", b"qstate", b"meta",
    b"services", b"service_certs", b"service_queues", b"service_subs",
)
# Added after the first stores were made: a store without them gets them at its first open
# by this version, its service index built then from the queue records (once).
_SERVICE_DBS = frozenset((b"services", b"service_certs", b"service_queues"))
# Added later still: a store without it gets its counts and hashes computed once at open.
_SERVICE_SUBS_DB = b"service_subs"
_SERVICE_SUBS = struct.Struct(">Q16s")
_FORMAT_KEY = b"format"
_U32 = struct.Struct(">I")
_SEQ = struct.Struct(">Q")
_QSTATE = struct.Struct(">BBQQ")
_QSTATE_VERSION = 1
_OVER_QUOTA = 1


def _decode_qstate(v: bytes) -> tuple[bool, int, int]:
    if len(v) != _QSTATE.size:
        raise StoreError("corrupt queue state record")
    version, flags, head, tail = _QSTATE.unpack(v)
    if version != _QSTATE_VERSION or head >= tail:
        raise StoreError("corrupt queue state record")
    return bool(flags & _OVER_QUOTA), head, tail


def _service_queue_key(service_id: bytes, party: str, queue_id: bytes) -> bytes:
    if not 0 < len(service_id) < 256:
        raise StoreUsageError("service id must be 1..255 bytes")
    return bytes((len(service_id),)) + service_id + party.encode() + queue_id


def _decode_service_value(v: bytes | None) -> ServiceRecord | None:
    if v is None:
        return None
    try:
        return decode_service(v)
    except RecordError as e:
        raise StoreError(f"corrupt service record: {e}") from None


def _build_service_index(txn: lmdb.Transaction, queues: object, index: object) -> None:
    """The service index of a store made before it existed, from its queue records."""
    cur = txn.cursor(db=queues)
    try:
        for _, value in cur:
            for entry in queue_services(decode_queue(value)):
                txn.put(_service_queue_key(*entry), b"", db=index)
    finally:
        cur.close()


def _service_subs_key(service_id: bytes, party: str) -> bytes:
    return _service_queue_key(service_id, party, b"")


def _decode_service_subs(v: bytes | None) -> ServiceSubs:
    if v is None:
        return NO_SERVICE_SUBS
    if len(v) != _SERVICE_SUBS.size:
        raise StoreError("corrupt service count record")
    return _SERVICE_SUBS.unpack(v)


def _build_service_subs(txn: lmdb.Transaction, index: object, subs: object) -> None:
    """Counts and hashes of a store made before they were kept, from its service index."""
    totals: dict[bytes, list] = {}
    cur = txn.cursor(db=index)
    try:
        for key, _ in cur:
            n = key[0]
            head = key[: n + 2]  # length, service id, party
            entry = totals.setdefault(head, [0, 0])
            entry[0] += 1
            entry[1] ^= int.from_bytes(queue_id_hash(key[n + 2:]), "big")
    finally:
        cur.close()
    for head, (count, digest) in totals.items():
        txn.put(head, _SERVICE_SUBS.pack(count, digest.to_bytes(16, "big")), db=subs)


def _prefix(rid: bytes) -> bytes:
    if not 0 < len(rid) < 256:
        raise QueueNotFound("recipient id must be 1..255 bytes")
    return bytes((len(rid),)) + rid


class LMDBStore(Store):
    """See the module docstring and base.Store. All methods must be called from one thread,
    except sync(), which may run in a worker thread concurrently."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        map_size: int = DEFAULT_MAP_SIZE,
        durability: str = "fsync",
        writemap: bool = False,
        map_size_max: int | None = None,
        shared: bool = False,
    ) -> None:
        if durability not in ("fsync", "none"):
            raise ValueError("durability must be 'fsync' or 'none'")
        self._durability = durability
        self._txn: lmdb.Transaction | None = None  # the transaction reads and writes use now
        self._root: lmdb.Transaction | None = None  # the batch the group commit closes
        self._in_unit = False
        self._shared = self.shared_writers = shared
        self._read: lmdb.Transaction | None = None  # shared: the renewed read-only transaction
        # LMDB has no nested transactions with writemap: a unit is then the whole batch.
        self._nested = not writemap
        self._map_size = map_size
        self._map_size_max = max(map_size, map_size_max or map_size)
        self._grow_wanted = False
        self._commits = 0  # commits made; sync() flushes only if this moved
        self._synced = 0
        self._sync_lock = threading.Lock()
        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        try:
            env = lmdb.Environment(
                path,
                map_size=map_size,
                subdir=True,
                max_dbs=len(_DB_NAMES),
                sync=False,
                metasync=False,
                writemap=writemap,
                lock=True,
            )
        except (lmdb.InvalidError, lmdb.VersionMismatchError, lmdb.CorruptedError) as e:
            raise StoreFormatError(f"{path} is not a readable LMDB store: {e}") from e
        except lmdb.Error as e:
            raise StoreError(f"cannot open LMDB store at {path}: {e}") from e
        self._env = env
        if shared:
            # A killed worker's reader slot would pin old pages until cleared.
            env.reader_check()
        try:
            self._open_dbs(path)
        except BaseException:
            env.close()
            raise

    def _open_dbs(self, path: str) -> None:
        env = self._env
        try:
            with env.begin(write=True) as txn:
                names = {k for k, _ in txn.cursor()}
                unknown = names - set(_DB_NAMES)
                if unknown:
                    raise StoreFormatError(f"{path} is an LMDB environment but not an smpfast store")
                dbs = {n: env.open_db(n, txn=txn) for n in _DB_NAMES}
                rebuilt = bool(names) and not _SERVICE_DBS & names
                if rebuilt:
                    _build_service_index(txn, dbs[b"queues"], dbs[b"service_queues"])
                if names and (rebuilt or _SERVICE_SUBS_DB not in names):
                    txn.drop(dbs[_SERVICE_SUBS_DB], delete=False)  # whatever it held is stale
                    _build_service_subs(txn, dbs[b"service_queues"], dbs[_SERVICE_SUBS_DB])
                fmt = txn.get(_FORMAT_KEY, db=dbs[b"meta"])
                if fmt is None:
                    if names:
                        raise StoreFormatError(f"{path}: smpfast store without a format version")
                    txn.put(_FORMAT_KEY, _U32.pack(STORE_FORMAT), db=dbs[b"meta"])
                elif len(fmt) != 4 or _U32.unpack(fmt)[0] != STORE_FORMAT:
                    raise StoreFormatError(
                        f"{path}: store format {fmt.hex() if len(fmt) != 4 else _U32.unpack(fmt)[0]}"
                        f" is not supported (this smpfast reads format {STORE_FORMAT})"
                    )
        except lmdb.Error as e:
            raise StoreError(f"cannot open LMDB store at {path}: {e}") from e
        if fmt is None:  # a new store: its format must be durable before anything else
            self._env.sync(True)
        self._queues = dbs[b"queues"]
        self._senders = dbs[b"senders"]
        self._notifiers = dbs[b"notifiers"]
        self._links = dbs[b"links"]
        self._messages = dbs[b"messages"]
        self._qstate = dbs[b"qstate"]
        self._services = dbs[b"services"]
        self._service_certs = dbs[b"service_certs"]
        self._service_queues = dbs[b"service_queues"]
        self._service_subs = dbs[_SERVICE_SUBS_DB]

    # --- transaction plumbing -------------------------------------------------------------

    def _begin(self) -> lmdb.Transaction:
        """The current transaction for reads: the unit's if one wrote, else the batch's."""
        if self._txn is not None:
            return self._txn
        if self._shared and not self._in_unit:
            return self._fresh_read()
        try:
            self._root = self._txn = self._env_begin(write=True)
        except lmdb.Error as e:
            raise StoreError(f"cannot begin a transaction: {e}") from e
        return self._txn

    def _env_begin(self, **kwargs: object) -> lmdb.Transaction:
        try:
            return self._env.begin(**kwargs)
        except lmdb.MapResizedError:
            # Another process grew the map: adopt its size, then begin again.
            self._drop_read()
            self._env.set_mapsize(0)
            self._map_size = self._env.info()["map_size"]
            return self._env.begin(**kwargs)

    def _fresh_read(self) -> lmdb.Transaction:
        """Shared: a read-only snapshot of the latest commit of any process."""
        self._drop_read()  # py-lmdb keeps the reader slot: a new read transaction is cheap
        try:
            txn = self._read = self._env_begin(write=False)
        except lmdb.Error as e:
            self._read = None
            raise StoreError(f"cannot begin a read transaction: {e}") from e
        return txn

    def _drop_read(self) -> None:
        txn, self._read = self._read, None
        if txn is not None:
            try:
                txn.abort()
            except lmdb.Error:
                pass

    def _write_txn(self) -> lmdb.Transaction:
        """The transaction a mutation writes into: inside a unit, a child of the batch
        (begun at the unit's first write), so that a failure aborts the unit alone."""
        txn = self._begin()
        if self._shared:
            return txn
        if self._in_unit and self._nested and txn is self._root:
            try:
                txn = self._txn = self._env.begin(write=True, parent=txn)
            except lmdb.Error as e:
                raise StoreError(f"cannot begin a write unit: {e}") from e
        return txn

    def _begin_unit(self) -> None:
        if self._in_unit:
            raise RuntimeError("write units do not nest")
        self._in_unit = True

    def _end_unit(self) -> None:
        if self._shared:
            self._end_shared_unit()
            return
        child = self._txn
        if child is not None and child is not self._root:
            self._txn = self._root
            try:
                child.commit()  # into the batch: no I/O, pages stay in memory
            except lmdb.Error as e:
                try:
                    self._fail(e)
                finally:
                    self._in_unit = False
        self._in_unit = False

    def _rollback_unit(self) -> None:
        if self._shared:
            self._abort_shared_unit()
        else:
            self._abort_unit()
        self._in_unit = False

    def _end_shared_unit(self) -> None:
        """Shared: the unit's transaction is committed now (no fsync); it counts as a write
        even if it only read (see the module docstring)."""
        txn = self._txn
        self._root = self._txn = None
        try:
            if txn is not None:
                try:
                    txn.commit()
                except lmdb.MapFullError as e:
                    self._want_growth()
                    raise StoreFullError("the LMDB map is full at commit; the unit was aborted") from e
                except lmdb.Error as e:
                    raise StoreError(f"LMDB commit failed: {e}; the unit was aborted") from e
                self._commits += 1
                self._note_write()
        finally:
            self._in_unit = False

    def _abort_shared_unit(self) -> None:
        txn = self._txn
        self._root = self._txn = None
        if txn is not None:
            try:
                txn.abort()
            except lmdb.Error:
                pass

    def _abort_unit(self) -> None:
        child = self._txn
        if child is not None and child is not self._root:
            self._txn = self._root
            try:
                child.abort()
            except lmdb.Error:
                pass  # the child is gone either way

    def _fail(self, e: BaseException) -> None:
        """Abort the unit (or, outside one, the batch) after an engine failure, then raise the
        StoreError for it."""
        if self._in_unit and self._shared:
            self._abort_shared_unit()
        elif self._in_unit and self._nested:
            self._abort_unit()
        else:
            self.abort()
        if isinstance(e, lmdb.MapFullError):
            self._want_growth()
            raise StoreFullError("the LMDB map is full (raise [STORE] map_size)") from e
        if isinstance(e, lmdb.Error):
            raise StoreError(f"LMDB: {e}") from e
        raise e

    def _want_growth(self) -> None:
        if self._map_size < self._map_size_max:
            self._grow_wanted = True

    @property
    def needs_maintenance(self) -> bool:
        return self._grow_wanted

    def maintain(self) -> None:
        """Between transactions (none may be open in this process): grow the map after it
        filled, when ``map_size_max`` allows. The group committer calls this after commits."""
        if not self._grow_wanted or self._txn is not None:
            return
        self._grow_wanted = False
        self._drop_read()
        new_size = min(self._map_size * 2, self._map_size_max)
        try:
            self._env.set_mapsize(new_size)
        except lmdb.Error as e:
            log.error("could not grow the LMDB map to %d bytes: %s", new_size, e)
            return
        log.warning("LMDB map was full: grew it from %d to %d bytes", self._map_size, new_size)
        self._map_size = new_size

    @property
    def map_size(self) -> int:
        return self._map_size

    def commit(self) -> None:
        txn = self._root
        if self._shared and txn is None:
            self._writes = 0  # the units committed themselves; sync() makes them durable
            return
        if txn is None:
            return
        if self._in_unit:
            raise RuntimeError("commit() inside a write unit")
        self._root = self._txn = None
        self._writes = 0
        try:
            txn.commit()
        except lmdb.MapFullError as e:
            self._want_growth()
            raise StoreFullError("the LMDB map is full at commit; the batch was aborted") from e
        except lmdb.Error as e:
            raise StoreError(f"LMDB commit failed: {e}; the batch was aborted") from e
        self._commits += 1

    def abort(self) -> None:
        self._abort_unit()
        txn = self._root
        self._root = self._txn = None
        if self._shared:
            self._drop_read()
            if txn is None:
                return  # what the units wrote is committed: nothing is discarded
        self._discarded()
        if txn is not None:
            try:
                txn.abort()
            except lmdb.Error:
                pass  # the transaction is gone either way

    def sync(self) -> None:
        if self._durability == "none":
            return
        with self._sync_lock:
            target = self._commits  # commits counted here have finished writing
            if target == self._synced:
                return
            try:
                self._env.sync(True)
            except lmdb.Error as e:
                raise StoreError(f"LMDB sync failed: {e}") from e
            self._synced = target

    def close(self) -> None:
        with self._sync_lock:
            self.abort()
            self._drop_read()
            self._env.close()

    # --- queues ---------------------------------------------------------------------------

    def _get_queue(self, txn: lmdb.Transaction, rid: bytes) -> QueueRecord | None:
        v = txn.get(rid, db=self._queues)
        if v is None:
            return None
        try:
            return decode_queue(v)
        except RecordError as e:
            raise StoreError(f"corrupt queue record: {e}") from None

    @_engine_call
    def get_queue(self, rid: bytes) -> QueueRecord | None:
        txn = self._begin()
        return self._get_queue(txn, rid)

    @_engine_call
    def _by_index(self, db: object, key: bytes) -> QueueRecord | None:
        txn = self._begin()
        rid = txn.get(key, db=db)
        return None if rid is None else self._get_queue(txn, rid)

    def queue_by_sender(self, sid: bytes) -> QueueRecord | None:
        return self._by_index(self._senders, sid)

    def queue_by_notifier(self, nid: bytes) -> QueueRecord | None:
        return self._by_index(self._notifiers, nid)

    def queue_by_link(self, link_id: bytes) -> QueueRecord | None:
        return self._by_index(self._links, link_id)

    def cover_miss(self, key: bytes, by_index: bool) -> None:
        # No _engine_call wrapper and no _begin() call: a hit has no extra call either, and
        # the lookup before this one opened the transaction.
        txn = self._txn or self._begin()
        if by_index:
            try:
                txn.get(key, db=self._queues)  # a hit reads the queue after the index
            except lmdb.Error as e:
                self._fail(e)
        if self._read is not None:
            self._drop_read()
        decode_queue(TYPICAL_QUEUE_RECORD)

    @_engine_call
    def add_queue(self, rec: QueueRecord) -> bool:
        data = encode_queue(rec)
        rid = rec.recipient_id
        _prefix(rid)
        txn = self._write_txn()
        ntf = rec.notifier
        if (
            txn.get(rid, db=self._queues) is not None
            or txn.get(rec.sender_id, db=self._senders) is not None
            or (ntf is not None and txn.get(ntf.notifier_id, db=self._notifiers) is not None)
            or (rec.link_id is not None and txn.get(rec.link_id, db=self._links) is not None)
        ):
            return False
        txn.put(rid, data, db=self._queues)
        txn.put(rec.sender_id, rid, db=self._senders)
        if ntf is not None:
            txn.put(ntf.notifier_id, rid, db=self._notifiers)
        if rec.link_id is not None:
            txn.put(rec.link_id, rid, db=self._links)
        self._reindex_services(txn, None, rec)
        self._note_write()
        return True

    @_engine_call
    def update_queue(self, rec: QueueRecord) -> None:
        data = encode_queue(rec)
        rid = rec.recipient_id
        txn = self._write_txn()
        old = self._get_queue(txn, rid)
        if old is None:
            raise QueueNotFound(rid.hex())
        old_nid = old.notifier.notifier_id if old.notifier is not None else None
        new_nid = rec.notifier.notifier_id if rec.notifier is not None else None
        moves = []
        for db, old_id, new_id in (
            (self._senders, old.sender_id, rec.sender_id),
            (self._notifiers, old_nid, new_nid),
            (self._links, old.link_id, rec.link_id),
        ):
            if old_id != new_id:
                if new_id is not None:
                    owner = txn.get(new_id, db=db)
                    if owner is not None and owner != rid:
                        raise DuplicateIdError(f"id {new_id.hex()} belongs to another queue")
                moves.append((db, old_id, new_id))
        for db, old_id, new_id in moves:
            if old_id is not None:
                txn.delete(old_id, db=db)
            if new_id is not None:
                txn.put(new_id, rid, db=db)
        self._reindex_services(txn, old, rec)
        txn.put(rid, data, db=self._queues)
        self._note_write()

    @_engine_call
    def delete_queue(self, rid: bytes) -> QueueRecord | None:
        txn = self._write_txn()
        old = self._get_queue(txn, rid)
        if old is None:
            return None
        txn.delete(rid, db=self._queues)
        txn.delete(old.sender_id, db=self._senders)
        if old.notifier is not None:
            txn.delete(old.notifier.notifier_id, db=self._notifiers)
        if old.link_id is not None:
            txn.delete(old.link_id, db=self._links)
        self._reindex_services(txn, old, None)
        if txn.delete(rid, db=self._qstate):
            prefix = _prefix(rid)
            cur = txn.cursor(db=self._messages)
            if cur.set_range(prefix):
                while cur.key().startswith(prefix):
                    if not cur.delete():
                        break
        self._note_write()
        return old

    @_engine_call
    def _entries(self, db: object) -> int:
        txn = self._begin()
        return txn.stat(db)["entries"]

    @_engine_call
    def queues_after(self, cursor: bytes | None, limit: int) -> list[QueueRecord]:
        txn = self._begin()
        out: list[QueueRecord] = []
        if limit <= 0:
            return out
        cur = txn.cursor(db=self._queues)
        try:
            ok = cur.first() if cursor is None else cur.set_range(cursor)
            if ok and cursor is not None and cur.key() == cursor:
                ok = cur.next()
            while ok and len(out) < limit:
                try:
                    out.append(decode_queue(cur.value()))
                except RecordError as e:
                    raise StoreError(f"corrupt queue record: {e}") from None
                ok = cur.next()
        finally:
            cur.close()
        return out

    def queue_count(self) -> int:
        return self._entries(self._queues)

    def notifier_count(self) -> int:
        return self._entries(self._notifiers)

    def stored_message_count(self) -> int:
        return self._entries(self._messages)

    # --- services -------------------------------------------------------------------------

    def _reindex_services(self, txn: lmdb.Transaction, old: QueueRecord | None, new: QueueRecord | None) -> None:
        before, after = queue_services(old), queue_services(new)
        for entry in before - after:
            if txn.delete(_service_queue_key(*entry), db=self._service_queues):
                self._change_subs(txn, entry, -1)
        for entry in after - before:
            if txn.put(_service_queue_key(*entry), b"", db=self._service_queues, overwrite=False):
                self._change_subs(txn, entry, 1)

    def _change_subs(self, txn: lmdb.Transaction, entry: tuple[bytes, str, bytes], delta: int) -> None:
        """One id joined (+1) or left (-1) the service: its count and hash, in the same
        transaction as the index entry (never out of step with it)."""
        sid, party, qid = entry
        key = _service_subs_key(sid, party)
        count, digest = _decode_service_subs(txn.get(key, db=self._service_subs))
        count += delta
        if count > 0:
            txn.put(key, _SERVICE_SUBS.pack(count, xor_hashes(digest, queue_id_hash(qid))), db=self._service_subs)
        else:
            txn.delete(key, db=self._service_subs)

    @_engine_call
    def get_service(self, service_id: bytes) -> ServiceRecord | None:
        txn = self._begin()
        return _decode_service_value(txn.get(service_id, db=self._services))

    @_engine_call
    def service_by_cert(self, cert_hash: bytes) -> ServiceRecord | None:
        txn = self._begin()
        sid = txn.get(cert_hash, db=self._service_certs)
        return None if sid is None else _decode_service_value(txn.get(sid, db=self._services))

    @_engine_call
    def add_service(self, rec: ServiceRecord) -> bool:
        data = encode_service(rec)
        if not 0 < len(rec.cert_hash) <= 255:
            raise RecordError("cert_hash must be 1..255 bytes")
        txn = self._write_txn()
        if (
            txn.get(rec.service_id, db=self._services) is not None
            or txn.get(rec.cert_hash, db=self._service_certs) is not None
        ):
            return False
        txn.put(rec.service_id, data, db=self._services)
        txn.put(rec.cert_hash, rec.service_id, db=self._service_certs)
        self._note_write()
        return True

    @_engine_call
    def service_queue_subs(self, service_id: bytes, party: str) -> ServiceSubs:
        if party not in (SERVICE_RECIPIENT, SERVICE_NOTIFIER):
            raise StoreUsageError(f"unknown service party {party!r}")
        txn = self._begin()
        return _decode_service_subs(txn.get(_service_subs_key(service_id, party), db=self._service_subs))

    @_engine_call
    def service_queues_after(self, service_id: bytes, party: str, cursor: bytes | None,
                             limit: int) -> list[bytes]:
        if party not in (SERVICE_RECIPIENT, SERVICE_NOTIFIER):
            raise StoreUsageError(f"unknown service party {party!r}")
        prefix = _service_subs_key(service_id, party)
        txn = self._begin()
        out: list[bytes] = []
        if limit <= 0:
            return out
        cur = txn.cursor(db=self._service_queues)
        try:
            ok = cur.set_range(prefix if cursor is None else prefix + cursor)
            if ok and cursor is not None and cur.key() == prefix + cursor:
                ok = cur.next()
            n = len(prefix)
            while ok and len(out) < limit:
                key = cur.key()
                if not key.startswith(prefix):
                    break
                out.append(key[n:])
                ok = cur.next()
        finally:
            cur.close()
        return out

    @_engine_call
    def services_after(self, cursor: bytes | None, limit: int) -> list[ServiceRecord]:
        txn = self._begin()
        out: list[ServiceRecord] = []
        if limit <= 0:
            return out
        cur = txn.cursor(db=self._services)
        try:
            ok = cur.first() if cursor is None else cur.set_range(cursor)
            if ok and cursor is not None and cur.key() == cursor:
                ok = cur.next()
            while ok and len(out) < limit:
                out.append(_decode_service_value(cur.value()))  # type: ignore[arg-type]
                ok = cur.next()
        finally:
            cur.close()
        return out

    # --- messages -------------------------------------------------------------------------

    @_engine_call
    def write_message(self, rid: bytes, msg: StoredMessage, quota: int = DEFAULT_QUOTA) -> WriteResult:
        data = encode_message(msg)
        prefix = _prefix(rid)
        txn = self._write_txn()
        st = txn.get(rid, db=self._qstate)
        if st is None:
            if txn.get(rid, db=self._queues) is None:
                raise QueueNotFound(rid.hex())
            head = tail = 0
        else:
            over, head, tail = _decode_qstate(st)
            if over:
                return WriteResult.FULL
        size = tail - head
        if size < quota:
            result = WriteResult.STORED_EMPTY if size == 0 else WriteResult.STORED
            flags = 0
        else:
            data = encode_message(quota_marker(msg.msg_id, msg.ts))
            result = WriteResult.QUOTA
            flags = _OVER_QUOTA
        txn.put(prefix + _SEQ.pack(tail), data, db=self._messages)
        txn.put(rid, _QSTATE.pack(_QSTATE_VERSION, flags, head, tail + 1), db=self._qstate)
        self._note_write()
        return result

    def _head(self, txn: lmdb.Transaction, rid: bytes) -> tuple[bool, int, int, bytes] | None:
        st = txn.get(rid, db=self._qstate)
        if st is None:
            return None
        over, head, tail = _decode_qstate(st)
        key = _prefix(rid) + _SEQ.pack(head)
        return over, head, tail, key

    def _get_record(self, txn: lmdb.Transaction, key: bytes) -> bytes:
        v = txn.get(key, db=self._messages)
        if v is None:
            raise StoreError("corrupt store: queue state points to a missing message")
        return v

    def _pop_head(self, txn: lmdb.Transaction, rid: bytes, over: bool, head: int, tail: int, key: bytes) -> None:
        txn.delete(key, db=self._messages)
        if head + 1 == tail:
            txn.delete(rid, db=self._qstate)  # empty: the quota flag resets with it
        else:
            flags = _OVER_QUOTA if over else 0
            txn.put(rid, _QSTATE.pack(_QSTATE_VERSION, flags, head + 1, tail), db=self._qstate)

    @_engine_call
    def peek_message(self, rid: bytes) -> StoredMessage | None:
        txn = self._begin()
        h = self._head(txn, rid)
        if h is None:
            return None
        return decode_message(self._get_record(txn, h[3]))

    @_engine_call
    def delete_message(self, rid: bytes, msg_id: bytes) -> bool:
        txn = self._write_txn()
        h = self._head(txn, rid)
        if h is None:
            return False
        over, head, tail, key = h
        if message_meta(self._get_record(txn, key))[0] != msg_id:
            return False
        self._pop_head(txn, rid, over, head, tail, key)
        self._note_write()
        return True

    @_engine_call
    def message_count(self, rid: bytes) -> int:
        txn = self._begin()
        st = txn.get(rid, db=self._qstate)
        if st is None:
            return 0
        _, head, tail = _decode_qstate(st)
        return tail - head

    @_engine_call
    def queue_messages(self, rid: bytes) -> list[StoredMessage]:
        txn = self._begin()
        h = self._head(txn, rid)
        if h is None:
            return []
        _, head, tail, key = h
        prefix = key[:-8]
        return [decode_message(self._get_record(txn, prefix + _SEQ.pack(seq))) for seq in range(head, tail)]

    @_engine_call
    def expire_messages(self, rid: bytes, older_than: int) -> int:
        txn = self._write_txn()
        n = 0
        h = self._head(txn, rid)
        if h is None:
            return 0
        over, head, tail, key = h
        prefix = key[:-8]
        while head < tail:
            key = prefix + _SEQ.pack(head)
            _, ts, is_quota = message_meta(self._get_record(txn, key))
            if is_quota or ts >= older_than:
                break
            txn.delete(key, db=self._messages)
            head += 1
            n += 1
        if n:
            if head == tail:
                txn.delete(rid, db=self._qstate)
            else:
                flags = _OVER_QUOTA if over else 0
                txn.put(rid, _QSTATE.pack(_QSTATE_VERSION, flags, head, tail), db=self._qstate)
            self._note_write()
        return n

    @_engine_call
    def _nonempty_after(self, cursor: bytes | None, limit: int) -> tuple[list[bytes], bool]:
        txn = self._begin()
        cur = txn.cursor(db=self._qstate)
        ok = cur.first() if cursor is None else cur.set_range(cursor)
        if ok and cursor is not None and cur.key() == cursor:
            ok = cur.next()
        out: list[bytes] = []
        while ok and len(out) < limit:
            out.append(cur.key())
            ok = cur.next()
        cur.close()
        return out, not ok
