"""Transmissions: encoding for both directions, decoding whole blocks into commands (server
side) or broker messages (client side) with the reference's error mapping, and batching.

Wire layout (Protocol.hs): ``auth [serviceSig] [sessionId] corrId entityId command``;
the session id is on the wire only at v6 (``versions.implied_session``), the service
signature slot exists from v16 after a non-empty authorization (``versions.service_auth``).
Authorizations cover ``t_for_auth`` = ``shortString(sessionId) corrId entityId command``.

Decoding maps per-transmission problems like tDecodeServer / tDecodeClient:

| problem                                   | error         | corrId | entity |
|-------------------------------------------|---------------|--------|--------|
| block not a batch (FramingError)          | BLOCK (once)  | empty  | empty  |
| transmission does not split               | BLOCK         | empty  | empty  |
| authorization of a bad length (server)    | BLOCK         | yes    | empty  |
| v6 session id differs                     | SESSION       | yes    | empty  |
| unknown tag                               | CMD UNKNOWN   | yes    | yes    |
| bad parameters / trailing bytes           | CMD SYNTAX    | yes    | yes    |
| credential rule (check_credentials)       | CMD ...       | yes    | yes    |
"""

from __future__ import annotations

from .. import _core
from . import versions as V
from .commands import (
    Command,
    Response,
    check_credentials,
    check_response_entity,
    parse_command,
    parse_response,
)
from .errors import BLOCK, CMD_SYNTAX, CMD_UNKNOWN, SESSION, ErrorType, ParseError, UnknownTag

_T_OK = _core.T_OK
_T_BAD = _core.T_BAD
_T_BAD_AUTH = _core.T_BAD_AUTH
_T_BAD_SESSION = _core.T_BAD_SESSION
_encode_transmission = _core.encode_transmission


class ReceivedCommand:
    """A client transmission as the server decoded it.

    Exactly one of ``command`` and ``error`` is set. With ``error`` the server answers
    ``ERR error`` with this ``corr_id`` and ``entity_id``. ``auth`` (b"" if none),
    ``service_sig`` and ``t_for_auth`` are what the authorization check needs.
    """

    __slots__ = ("corr_id", "entity_id", "command", "error", "auth", "service_sig", "t_for_auth")

    def __init__(
        self,
        corr_id: bytes,
        entity_id: bytes,
        command: Command | None,
        error: ErrorType | None,
        auth: bytes = b"",
        service_sig: bytes | None = None,
        t_for_auth: bytes = b"",
    ) -> None:
        self.corr_id = corr_id
        self.entity_id = entity_id
        self.command = command
        self.error = error
        self.auth = auth
        self.service_sig = service_sig
        self.t_for_auth = t_for_auth

    def __repr__(self) -> str:
        what = self.command if self.error is None else f"ERR {self.error}"
        return f"ReceivedCommand({self.corr_id.hex()}, {self.entity_id.hex()}, {what})"


class ReceivedResponse:
    """A server transmission as the client decoded it: exactly one of ``response`` and
    ``error`` is set (``error`` means the transmission was unusable, not ``ERR``)."""

    __slots__ = ("corr_id", "entity_id", "response", "error")

    def __init__(self, corr_id: bytes, entity_id: bytes, response: Response | None, error: ErrorType | None) -> None:
        self.corr_id = corr_id
        self.entity_id = entity_id
        self.response = response
        self.error = error

    def __repr__(self) -> str:
        what = self.response if self.error is None else f"error {self.error}"
        return f"ReceivedResponse({self.corr_id.hex()}, {self.entity_id.hex()}, {what})"


class Transmission:
    """``(corr_id, entity_id, message)`` where message is a Command, a Response or the
    already-encoded command/response bytes."""

    __slots__ = ("corr_id", "entity_id", "message")

    def __init__(self, corr_id: bytes, entity_id: bytes, message: Command | Response | bytes) -> None:
        self.corr_id = corr_id
        self.entity_id = entity_id
        self.message = message

    def message_bytes(self, version: int) -> bytes:
        m = self.message
        return m if isinstance(m, bytes) else m.encode(version)

    def t_for_auth(self, version: int, session_id: bytes) -> bytes:
        return t_for_auth(session_id, self.corr_id, self.entity_id, self.message_bytes(version))

    def encode_client(self, version: int, session_id: bytes, auth: bytes = b"", service_sig: bytes | None = None) -> bytes:
        return encode_client_transmission(
            version, session_id, self.corr_id, self.entity_id, self.message_bytes(version), auth, service_sig
        )

    def encode_server(self, version: int, session_id: bytes) -> bytes:
        return encode_server_transmission(version, session_id, self.corr_id, self.entity_id, self.message_bytes(version))


def t_for_auth(session_id: bytes, corr_id: bytes, entity_id: bytes, command: bytes) -> bytes:
    """The bytes an authorization covers (every version includes the session id)."""
    return b"".join((
        bytes((len(session_id),)), session_id, bytes((len(corr_id),)), corr_id,
        bytes((len(entity_id),)), entity_id, command,
    ))


def encode_client_transmission(
    version: int,
    session_id: bytes,
    corr_id: bytes,
    entity_id: bytes,
    command: Command | bytes,
    auth: bytes = b"",
    service_sig: bytes | None = None,
) -> bytes:
    """A client → server transmission (without its batch length prefix). From v16 a
    non-empty ``auth`` is followed by the Maybe service signature (``service_sig``)."""
    cmd = command if isinstance(command, bytes) else command.encode(version)
    return _encode_transmission(
        auth, corr_id, entity_id, cmd, session_id, version >= V.AUTH_CMDS, version >= V.SERVICE_CERTS, service_sig
    )


def encode_server_transmission(
    version: int, session_id: bytes, corr_id: bytes, entity_id: bytes, response: Response | bytes
) -> bytes:
    """A server → client transmission: empty authorization; session id on the wire at v6."""
    msg = response if isinstance(response, bytes) else response.encode(version)
    if version >= V.AUTH_CMDS:
        return b"".join((b"\x00", bytes((len(corr_id),)), corr_id, bytes((len(entity_id),)), entity_id, msg))
    return _encode_transmission(b"", corr_id, entity_id, msg, session_id, False, False, None)


def block_error_command() -> list[ReceivedCommand]:
    """What a block that cannot be unpadded, decrypted or split decodes to: one ERR BLOCK
    with empty corrId and entity (the connection stays usable)."""
    return [ReceivedCommand(b"", b"", None, BLOCK)]


def decode_server_transmissions(block: bytes, version: int, session_id: bytes) -> list[ReceivedCommand]:
    """Decode a (decrypted) padded block received by the server, like tDecodeServer."""
    try:
        parts = _core.split_block(block, session_id, version >= V.AUTH_CMDS, version >= V.SERVICE_CERTS)
    except _core.FramingError:
        return block_error_command()
    out = []
    append = out.append
    for status, auth, sig, corr, ent, cmd_bytes, tfa in parts:
        if status == _T_OK:
            try:
                cmd = parse_command(cmd_bytes, version)
            except UnknownTag:
                append(ReceivedCommand(corr, ent, None, CMD_UNKNOWN))
                continue
            except ParseError:
                append(ReceivedCommand(corr, ent, None, CMD_SYNTAX))
                continue
            err = check_credentials(cmd, bool(auth), ent)
            if err is None:
                append(ReceivedCommand(corr, ent, cmd, None, auth, sig, tfa))
            else:
                append(ReceivedCommand(corr, ent, None, err))
        elif status == _T_BAD_SESSION:
            append(ReceivedCommand(corr, b"", None, SESSION))
        elif status == _T_BAD_AUTH:
            append(ReceivedCommand(corr, b"", None, BLOCK))
        else:
            append(ReceivedCommand(b"", b"", None, BLOCK))
    return out


def decode_client_transmissions(block: bytes, version: int, session_id: bytes) -> list[ReceivedResponse]:
    """Decode a (decrypted) padded block received by the client, like tDecodeClient,
    including the client's entity rule (check_response_entity)."""
    try:
        parts = _core.split_block(block, session_id, version >= V.AUTH_CMDS, version >= V.SERVICE_CERTS)
    except _core.FramingError:
        return [ReceivedResponse(b"", b"", None, BLOCK)]
    out = []
    append = out.append
    for status, _auth, _sig, corr, ent, msg_bytes, _tfa in parts:
        if status == _T_BAD:
            append(ReceivedResponse(b"", b"", None, BLOCK))
            continue
        if status == _T_BAD_SESSION:
            append(ReceivedResponse(corr, b"", None, SESSION))
            continue
        # the client does not check the authorization length (responses carry none)
        try:
            msg = parse_response(msg_bytes, version)
        except UnknownTag:
            append(ReceivedResponse(corr, ent, None, CMD_UNKNOWN))
            continue
        except ParseError:
            append(ReceivedResponse(corr, ent, None, CMD_SYNTAX))
            continue
        err = check_response_entity(msg, ent)
        append(ReceivedResponse(corr, ent, msg if err is None else None, err))
    return out


def batch_blocks(transmissions: list[bytes], padded_size: int = V.BLOCK_SIZE) -> list[bytes]:
    """Pack encoded transmissions, in order, into padded blocks the way the reference
    does (budget 16365 bytes incl. 2-byte lengths, at most 255 per block, short block
    first). ``padded_size`` is 16384, or 16368 (versions.ENCRYPTED_BLOCK_PAD) when the
    block is then encrypted. A transmission longer than 16363 bytes raises FramingError
    (the reference's TELargeMsg)."""
    counts = _core.group_transmissions([len(t) for t in transmissions], V.BATCH_BUDGET, V.MAX_BATCH)
    blocks = []
    i = 0
    for n in counts:
        blocks.append(_core.encode_batch(transmissions[i : i + n], padded_size))
        i += n
    return blocks
