# Stub of the compiled module; semantics and docs in _framing_py.py (its pure twin).
PAD_BYTE: int
T_OK: int
T_BAD: int
T_BAD_AUTH: int
T_BAD_SESSION: int
AUTH_LENGTHS: tuple[int, ...]
SERVICE_SIG_LENGTH: int

def pad(data: bytes, size: int) -> bytes: ...
def unpad(block: bytes) -> bytes: ...
def encode_batch(transmissions: list[bytes], size: int) -> bytes: ...
def encode_transmission(
    auth: bytes,
    corr_id: bytes,
    entity_id: bytes,
    command: bytes,
    session_id: bytes,
    implied_session: bool,
    service_auth: bool,
    service_sig: bytes | None = None,
) -> bytes: ...
def split_block(
    block: bytes, session_id: bytes, implied_session: bool, service_auth: bool
) -> list[tuple[int, bytes, bytes | None, bytes, bytes, bytes, bytes]]: ...
def group_transmissions(sizes: list[int], budget: int = 16365, max_count: int = 255) -> list[int]: ...
