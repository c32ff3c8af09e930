"""Target: the command and broker-message codecs at every version 6..20.

Each input is parsed both as a client command and as a broker message. Only the codec's
own errors (ParseError and its subclass UnknownTag) may escape; whatever parses must
encode at the same version, parse back to an equal value and encode to the same bytes
again. The encoders' documented version adaptations (SOK sent as OK below v16, DELD as
END below v10, ERR BLOCKED as AUTH below v12 and without its notice below v18, a broker
NETWORK error sent bare) lose information on purpose: for those the re-parsed value may
differ, but its encoding must still be the same bytes.

Input layout: ``version`` byte (6 + byte % 15: versions 6..20), ``flags`` byte (bit 0: has authorization,
bit 1: has entity id, for the credential checks; bit 2: also parse the bytes as the
proxy's inner RFWD/RRES payloads), then the command bytes (tag and parameters, as in a
transmission).

    python fuzz/command_codecs.py [libFuzzer flags] [corpus dirs]
"""

from __future__ import annotations

import atheris

from _harness import check, main

with atheris.instrument_imports(include=["smpfast"]):
    from smpfast.protocol import commands as C
    from smpfast.protocol import errors as E
    from smpfast.protocol import versions as V
    from smpfast.protocol.errors import ParseError


def _network_detail(err: object) -> bool:
    """Whether an error carries a broker NETWORK detail (sent bare, parsed as FAILED)."""
    if isinstance(err, E.ErrorType) and isinstance(err.detail, E.ProxyError):
        inner = err.detail.detail
        if isinstance(inner, E.BrokerError):
            return inner.code == "NETWORK"
        return _network_detail(inner)
    return False


def _adapted(value: object, version: int) -> bool:
    """The encoder drops part of ``value`` at ``version`` (see the module docstring)."""
    if isinstance(value, C.Sok):
        return version < V.SERVICE_CERTS
    if isinstance(value, C.Deld):
        return version < V.DELETED_EVENT
    if isinstance(value, C.Err):
        e = value.error
        if e.code == "BLOCKED":
            return version < V.BLOCKED_ENTITY or (version < V.CLIENT_NOTICES and e.detail.notice is not None)
        return _network_detail(e)
    return False


def _round_trip(value: object, version: int, parse, encode) -> None:
    wire = encode(value, version)
    again = parse(wire, version)
    if not _adapted(value, version):
        check(again == value, "re-parses differently", version, value, again)
    check(encode(again, version) == wire, "re-encodes differently", version, value, again)


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    version = V.MIN_VERSION + data[0] % (V.MAX_VERSION - V.MIN_VERSION + 1)
    flags, body = data[1], data[2:]
    try:
        cmd = C.parse_command(body, version)
    except ParseError:
        cmd = None
    if cmd is not None:
        _round_trip(cmd, version, C.parse_command, C.encode_command)
        C.check_credentials(cmd, bool(flags & 1), b"e" if flags & 2 else b"")
    if flags & 4:
        for inner in (C.FwdTransmission, C.FwdResponse):
            try:
                value = inner.parse(body)
            except ParseError:
                continue
            check(inner.parse(value.encode()) == value, inner.__name__, "round trip", value)
    try:
        msg = C.parse_response(body, version)
    except ParseError:
        return
    _round_trip(msg, version, C.parse_response, C.encode_response)
    C.check_response_entity(msg, b"e" if flags & 2 else b"")


if __name__ == "__main__":
    main(test_one_input)
