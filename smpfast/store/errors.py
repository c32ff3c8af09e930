"""Errors raised by the stores.

Two families:
- usage errors (``StoreUsageError`` and subclasses): a precondition failed; they are raised
  before the call wrote anything, and the uncommitted batch stays intact;
- everything else that derives from ``StoreError`` (``StoreFullError``, plain ``StoreError``):
  the engine failed during a mutation; the current write unit (``Store.unit``), or the whole
  uncommitted batch outside a unit, has been aborted.
"""

from __future__ import annotations


class StoreError(Exception):
    """The store could not do what was asked. The broker answers ERR STORE."""


class StoreFullError(StoreError):
    """The LMDB map (or disk) is full. The write unit (or uncommitted batch) was aborted."""


class StoreFormatError(StoreError):
    """The store on disk has a format version this code does not know (or is not a store)."""


class StoreUsageError(StoreError):
    """A precondition failed. Raised before anything was written: the batch is intact."""


class RecordError(StoreUsageError, ValueError):
    """A record that cannot be encoded, or bytes that are not a valid record.

    The record codecs raise only this error type, whatever the input.
    """


class QueueNotFound(StoreUsageError):
    """The recipient id names no queue (update_queue, write_message)."""


class DuplicateIdError(StoreUsageError):
    """update_queue would give a sender/notifier/link id that another queue already uses."""
