"""v11+ transport block encryption: the HKDF secret-box chain (Crypto.hs sbcInit, sbcHkdf).

``(ck_s2c, ck_c2s) = split32(HKDF-SHA512(salt=sessionId, ikm=X25519 session secret,
info="SimpleXSbChainInit", 64))``; every block, per direction, takes one step
``HKDF-SHA512(salt="", ikm=ck, info="SimpleXSbChain", 88) -> (ck', sbKey, nonce)`` and is
``box(HSalsa20(sbKey, 0^16), nonce, pad(batch, 16368))`` = 16-byte tag || 16368 bytes.

Decryption returns the *padded* 16368-byte plaintext (``Word16 len || batch || '#'...``),
which is exactly what ``smpfast._core.split_block`` takes. The chain advances on every
block, also when decryption fails, as the reference does.
"""

from __future__ import annotations

import hmac

import smpfast._core as core
from smpfast._core import CryptoError
from smpfast.protocol.versions import BLOCK_SIZE

TAG_SIZE = 16
PADDED_SIZE = BLOCK_SIZE - TAG_SIZE  # 16368: plaintext block size under encryption
INIT_INFO = b"SimpleXSbChainInit"
STEP_INFO = b"SimpleXSbChain"



def hkdf_sha512(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF with SHA-512 (empty salt = 64 zero bytes, as HMAC pads the key)."""
    if length > 255 * 64:
        raise CryptoError("HKDF output too long")
    prk = hmac.digest(salt, ikm, "sha512")
    out = b""
    t = b""
    i = 1
    while len(out) < length:
        t = hmac.digest(prk, t + info + bytes((i,)), "sha512")
        out += t
        i += 1
    return out[:length]


def sbc_init(session_id: bytes, secret: bytes) -> tuple[bytes, bytes]:
    """Chain keys ``(server->client, client->server)`` from the session DH secret."""
    out = hkdf_sha512(bytes(session_id), bytes(secret), INIT_INFO, 64)
    return out[:32], out[32:]


def sbc_step(chain_key: bytes) -> tuple[bytes, bytes, bytes]:
    """One chain step: ``(next chain key, sbKey, nonce)``, i.e. ``HKDF-SHA512(salt="",
    ikm=chain_key, info="SimpleXSbChain", 88)`` split 32/32/24.

    Hot path (one per block and direction), so in the compiled core with the box that
    follows it (``core.sbc_seal``/``sbc_open``): ``hmac.digest`` costs ~11 µs a call on
    OpenSSL 3, three of them a step, against ~2 µs for the whole step compiled."""
    return core.sbc_step(chain_key)


class _Chain:
    __slots__ = ("chain_key",)

    def __init__(self, chain_key: bytes) -> None:
        if len(chain_key) != 32:
            raise CryptoError("chain key must be 32 bytes")
        self.chain_key = bytes(chain_key)

    def next_key(self) -> tuple[bytes, bytes]:
        """Advance the chain: the block's precomputed box key ``HSalsa20(sbKey)`` and nonce."""
        self.chain_key, sb_key, nonce = sbc_step(self.chain_key)
        return core.hsalsa20_key(sb_key), nonce


class BlockEncryptor(_Chain):
    """Sending direction: every call encrypts one 16384-byte block."""

    __slots__ = ()

    def encrypt(self, padded: bytes) -> bytes:
        """Encrypt an already padded 16368-byte block plaintext (e.g. ``encode_batch(ts, 16368)``)."""
        if len(padded) != PADDED_SIZE:
            raise CryptoError("block plaintext must be 16368 bytes")
        self.chain_key, block = core.sbc_seal(self.chain_key, padded)
        return block

    def encrypt_content(self, content: bytes) -> bytes:
        """Pad the batch ``content`` (at most 16366 bytes) to 16368 and encrypt it."""
        key, nonce = self.next_key()
        return core.box_seal_padded(key, nonce, content, PADDED_SIZE)


class BlockDecryptor(_Chain):
    """Receiving direction: every call consumes one chain step, success or not."""

    __slots__ = ()

    def decrypt(self, block: bytes) -> bytes:
        """The padded 16368-byte plaintext of a 16384-byte block; CryptoError if it fails."""
        plaintext = self.decrypt_or_none(block)
        if plaintext is None:
            raise CryptoError("encrypted block must be 16384 bytes" if len(block) != BLOCK_SIZE
                              else "box failed to authenticate")
        return plaintext

    def decrypt_or_none(self, block: bytes) -> bytes | None:
        """``decrypt`` without the exception: None when the block does not decrypt."""
        if len(block) != BLOCK_SIZE:
            self.next_key()
            return None
        self.chain_key, plaintext = core.sbc_open(self.chain_key, block)
        return plaintext


def server_block_ciphers(session_id: bytes, secret: bytes) -> tuple[BlockEncryptor, BlockDecryptor]:
    """Server orientation: send with ck1 (server->client), receive with ck2."""
    s2c, c2s = sbc_init(session_id, secret)
    return BlockEncryptor(s2c), BlockDecryptor(c2s)


def client_block_ciphers(session_id: bytes, secret: bytes) -> tuple[BlockEncryptor, BlockDecryptor]:
    """Client orientation: send with ck2 (client->server), receive with ck1."""
    s2c, c2s = sbc_init(session_id, secret)
    return BlockEncryptor(c2s), BlockDecryptor(s2c)
