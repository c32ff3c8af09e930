"""SMP cryptography, sans-IO: keys, command authorization, block encryption, message
encryption, signed session keys (certificates live in ``certs``).

Every failure raises ``CryptoError`` (``smpfast._core.CryptoError``) or a subclass:
``KeyFormatError`` (key DER), ``SignedKeyError`` (signed session/service keys),
``DerError`` (raw DER helpers).
"""

from smpfast._core import CryptoError

from .auth import (
    AUTHENTICATOR_LEN,
    DUMMY_KEY_ED448,
    DUMMY_KEY_ED25519,
    DUMMY_KEY_X25519,
    ED448_SIG_LEN,
    ED25519_SIG_LEN,
    AuthRequest,
    AuthVerifier,
    authenticator,
    authorize,
    cb_nonce,
    sender_id_for,
    sign,
    t_for_auth,
)
from .blockcrypt import (
    BLOCK_SIZE,
    PADDED_SIZE,
    BlockDecryptor,
    BlockEncryptor,
    client_block_ciphers,
    hkdf_sha512,
    sbc_init,
    sbc_step,
    server_block_ciphers,
)
from .der import DerError
from .keys import (
    Alg,
    KeyFormatError,
    PrivateKey,
    PublicKey,
    as_private_key,
    as_public_key,
    decode_auth_key,
    decode_dh_key,
    decode_private_key,
    decode_public_key,
    decode_verify_key,
    encode_public_key,
    generate_private_key,
    dh_box_key,
    x25519_dh,
    x25519_raw,
)
from .message import (
    ENC_NTF_META_LEN,
    ENC_RCV_MSG_LEN,
    NTF_META_PADDED,
    RCV_MSG_PADDED,
    NtfMeta,
    QueueDhKeys,
    RcvMessage,
    decrypt_msg,
    decrypt_ntf_meta,
    decrypt_rcv_msg_body,
    encode_ntf_meta,
    encode_rcv_msg_body,
    encode_rcv_msg_quota,
    encrypt_msg,
    encrypt_ntf_meta,
    encrypt_rcv_msg,
    new_queue_dh,
    parse_ntf_meta,
    parse_rcv_msg_body,
    precompute,
)
from .session_key import (
    SignedKeyError,
    parse_signed_public_key,
    sign_public_key,
    sign_session_key,
    verify_session_key,
    verify_signed_public_key,
)

__all__ = [name for name in dir() if not name.startswith("_")]
