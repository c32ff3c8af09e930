"""Errors raised by the protocol codecs."""

from __future__ import annotations


class ParseError(ValueError):
    """Bytes that do not follow an SMP encoding. Codecs raise only this (or a subclass)."""


class UnknownTag(ParseError):
    """A command or response tag the version does not know: the reference's CMD UNKNOWN."""
