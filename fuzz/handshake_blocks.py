"""Target: the three handshake blocks (server hello, client hello, the v16+ third block).

Each input is parsed by all three parsers, as a padded block and as bare content. Only
ParseError may escape a parser; whatever parses must encode without error and parse back
to an equal value whose encoding is the same bytes.

Input layout: ``flags`` byte (bit 0: pad the rest to 16384 bytes with '#'; bit 1: also
parse the rest as bare content), then the block content (length prefix included).

    python fuzz/handshake_blocks.py [libFuzzer flags] [corpus dirs]
"""

from __future__ import annotations

import atheris

from _harness import check, main

with atheris.instrument_imports(include=["smpfast"]):
    from smpfast.protocol.errors import ParseError
    from smpfast.protocol.handshake import ClientHandshake, HandshakeResponse, ServerHandshake

BLOCK = 16384
CLASSES = (ServerHandshake, ClientHandshake, HandshakeResponse)


def _round_trip(cls: type, value: object) -> None:
    content = value.encode_content()
    block = value.encode()
    check(len(block) == BLOCK, cls.__name__, "encodes to a block of", len(block))
    again = cls.parse(block)
    check(again == value, cls.__name__, "re-parses differently", value, again)
    check(again.encode_content() == content, cls.__name__, "re-encodes differently", value)
    if isinstance(value, ClientHandshake):
        again.block_encryption  # noqa: B018 - derived property must not raise


def test_one_input(data: bytes) -> None:
    if not data:
        return
    flags, content = data[0], data[1:]
    block = content + b"#" * (BLOCK - len(content)) if flags & 1 else content
    for cls in CLASSES:
        try:
            value = cls.parse(block)
        except ParseError:
            value = None
        if value is not None:
            _round_trip(cls, value)
        if flags & 2:
            try:
                value = cls.parse_content(content)
            except ParseError:
                continue
            _round_trip(cls, value)


if __name__ == "__main__":
    main(test_one_input)
