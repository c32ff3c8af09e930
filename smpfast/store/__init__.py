"""Persistent state of the relay: queue records and queued messages.

Contract (the broker relies on exactly this; both implementations behave identically):

Records (records.py, fixed versioned binary layouts documented there):
  QueueRecord(recipient_id, recipient_keys, rcv_dh_secret, sender_id, sender_key=None,
              queue_mode=None, link_id=None, link_fixed=None, link_user=None, notifier=None,
              status='active', blocked_info=None, updated_at=0, rcv_service_id=None)
      recipient_keys: non-empty list of SPKI DER keys; rcv_dh_secret: the raw 32-byte X25519 secret
      (as the reference stores it; crypto.message.precompute gives the box key);
      queue_mode: 'M' | 'C' | None; link fields all set or all None; status 'active' | 'off' |
      'blocked' with blocked_info (BlockingInfo text) set exactly when 'blocked';
      updated_at: unix SECONDS rounded down to a day (multiple of 86400, the reference's
      SystemDate), 0 = never set.
  NotifierRecord(notifier_id, notifier_key, ntf_dh_secret, ntf_service_id=None)
  StoredMessage(msg_id, ts, notification=False, body=b"", is_quota=False)
      ts in seconds; body at most MAX_MESSAGE_BODY (16088) bytes; a quota marker
      (quota_marker(msg_id, ts)) has is_quota=True, no body, no notification.
  Records returned by the store are fresh copies: mutate them and call update_queue.

Store (base.py; LMDBStore in lmdb.py, MemoryStore in memory.py), synchronous, one thread:
  get_queue(rid) / queue_by_sender(sid) / queue_by_notifier(nid) / queue_by_link(link_id)
      -> QueueRecord | None
  add_queue(rec) -> bool            False if rid, sid, notifier id or link id is taken
  update_queue(rec) -> None         moves sender/notifier/link indexes; QueueNotFound,
                                    DuplicateIdError
  delete_queue(rid) -> QueueRecord | None   also removes indexes and all messages
  queue_count() -> int, notifier_count() -> int      O(1) statistics
  queues_after(cursor, limit) -> list[QueueRecord]  a page of records in recipient-id order
  iter_queues(page=1000)                            every record, a page at a time (export)
  write_message(rid, msg, quota=128) -> WriteResult   reference writeMsg rule:
      STORED / STORED_EMPTY (stored; the queue was empty before -> push to subscriber),
      QUOTA (a marker with msg's id/ts was appended), FULL (nothing stored);
      WriteResult.stored, WriteResult.was_empty. QueueNotFound if rid names no queue.
  peek_message(rid) -> StoredMessage | None         head (message or marker)
  delete_message(rid, msg_id) -> bool               deletes the head only if its id matches
  message_count(rid) -> int                         marker included
  queue_messages(rid) -> list[StoredMessage]        every entry, head first (export)
  stored_message_count() -> int                     all queues, markers included (O(1) on LMDB)
  expire_messages(rid, older_than) -> int           real messages with ts < older_than from
                                                    the head, stops at a quota marker
  expire_all(older_than, budget) -> int             bounded step of a scan over non-empty
      queues, resumes where the last call stopped; expire_pass_complete says the scan reached
      the end (next call starts over). Budget: 1 per queue examined + 1 per message deleted.
  commit()   commit the current write transaction (no fsync). Reads and writes all go through
             one lazily opened write transaction; reads see uncommitted writes.
  sync()     make everything committed so far durable (fsync unless durability='none');
             safe in a worker thread (trio.to_thread) while this thread keeps mutating.
  abort()    discard everything since the last commit.
  close()    abort the uncommitted batch and close.

Errors (errors.py), all StoreError:
  StoreUsageError (QueueNotFound, DuplicateIdError, RecordError): a precondition failed,
      raised before anything was written; the uncommitted batch is intact.
  StoreFullError (map full) and plain StoreError: the engine failed inside a call; THE WHOLE
      UNCOMMITTED BATCH WAS ABORTED (everything since the last commit is gone). Answer the
      batch's commands with ERR (STORE/INTERNAL), never OK.
  StoreFormatError: opening a store with an unknown format version / not a store.

Durability: LMDBStore(path, map_size=8 GiB, durability='fsync'|'none', writemap=False).
A process crash (kill -9) loses nothing committed; a power loss loses nothing synced.
"""

from .base import DEFAULT_QUOTA, MessageStore, QueueStore, Store, WriteResult
from .errors import (
    DuplicateIdError,
    QueueNotFound,
    RecordError,
    StoreError,
    StoreFormatError,
    StoreFullError,
    StoreUsageError,
)
from .lmdb import LMDBStore
from .memory import MemoryStore
from .records import (
    MAX_MESSAGE_BODY,
    MAX_MESSAGE_RECORD,
    STATUS_ACTIVE,
    STATUS_BLOCKED,
    STATUS_OFF,
    NotifierRecord,
    QueueRecord,
    StoredMessage,
    quota_marker,
)


__all__ = [
    "DEFAULT_QUOTA",
    "MAX_MESSAGE_BODY",
    "MAX_MESSAGE_RECORD",
    "STATUS_ACTIVE",
    "STATUS_BLOCKED",
    "STATUS_OFF",
    "DuplicateIdError",
    "LMDBStore",
    "MemoryStore",
    "MessageStore",
    "NotifierRecord",
    "QueueNotFound",
    "QueueRecord",
    "QueueStore",
    "RecordError",
    "Store",
    "StoreError",
    "StoreFormatError",
    "StoreFullError",
    "StoreUsageError",
    "StoredMessage",
    "WriteResult",
    "quota_marker",
]
