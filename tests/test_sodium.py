"""Crypto of the core on both twins: known answers (independently computed vectors), error cases,
batch verification (also on worker threads) and the fallback when libsodium is missing."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import textwrap
import threading
import time

import nacl.bindings
import nacl.signing
import pytest
import trio

import smpfast._core as core
from smpfast._core import CryptoError, _framing_py, _sodium_py


@pytest.fixture(params=["exported", "pure"])
def so(request):
    """The exported core (compiled unless SMPFAST_PURE=1) or the pure twin."""
    return core if request.param == "exported" else _sodium_py


def hsalsa20(so):
    """``hsalsa20`` is not in the exported API: take it from the module in use."""
    return getattr(so, "hsalsa20", None) or core._sodium.hsalsa20


def h(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


def seed(start: int) -> bytes:
    return bytes(range(start, start + 32))


SESSION = h("0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20")
CORR = h("a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7")
RECIPIENT = h("101112131415161718191a1b1c1d1e1f2021222324252627")
SENDER = h("303132333435363738393a3b3c3d3e3f4041424344454647")
MSG_ID = h("606162636465666768696a6b6c6d6e6f7071727374757677")

SERVER_SESSION_PRIV = seed(0x40)
SERVER_SESSION_PUB = h("79a631eede1bf9c98f12032cdeadd0e7a079398fc786b88cc846ec89af85a51a")
CLIENT_QUEUE_PUB = h("675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52f")
SERVER_QUEUE_PRIV = seed(0xA0)
CLIENT_RCV_DH_PUB = h("dc2cca31e8e43bbd91dff7e475cca3347eb478107d5bd765aba4ae4a30c35d44")
RCV_DH_SECRET = h("3b87c5035cce13678dd93d2dbc3a3d42039ebec86444a1ff82cd61b84c6fe968")


def ss(b: bytes) -> bytes:
    return bytes([len(b)]) + b


# --- known answers ------------------------------------------------------------------------


def test_x25519_authenticator_vector(so):
    """SUB authorized with an X25519 authenticator, checked by the server."""
    dh = h("d6fb939511b2381bc8599b4b8edc5968829450dfd7a87aebe78a703cd04cd54e")
    assert so.x25519(SERVER_SESSION_PRIV, CLIENT_QUEUE_PUB) == dh
    assert so.x25519(seed(0x60), SERVER_SESSION_PUB) == dh  # the client's side
    key = so.box_beforenm(CLIENT_QUEUE_PUB, SERVER_SESSION_PRIV)
    assert key == so.hsalsa20_key(dh)
    t_for_auth = ss(SESSION) + ss(CORR) + ss(RECIPIENT) + b"SUB"
    digest = h(
        "b86b3b4694b28c9f66d2fbb768884e39ee149ff33fbf6129176f330f945afea7"
        "a3c0a99ff777ba0cb5d59b293e47c267f49a719f72a5cfaf6a41cd713030face"
    )
    authenticator = h(
        "7604ba24b048ff30423fb4dc9c3d15ca643fb4b2a6cad76ce15a9c262bea72e67aa93f384b26f19e"
        "02f13c11d94818cefa297a205970c7e3744b7d55e28c29e5b3b2ad405e88ab893ae875a3ee61ca61"
    )
    assert so.box_open(key, CORR, authenticator) == digest == hashlib.sha512(t_for_auth).digest()
    assert so.box_seal(key, CORR, digest) == authenticator
    assert so.authenticator_verify(key, CORR, authenticator, t_for_auth) is True
    assert so.authenticator_verify(key, CORR, authenticator, t_for_auth + b" ") is False
    assert so.authenticator_verify(key, RECIPIENT, authenticator, t_for_auth) is False
    assert so.authenticator_verify(key, CORR, authenticator[:79], t_for_auth) is False
    assert so.verify_batch([(key, authenticator, t_for_auth, CORR)]) == [True]
    assert so.verify_batch([(key, authenticator, t_for_auth, None)]) == [False]


def test_block_encryption_vector(so):
    """The PING batch padded to 16368 in the SimpleX secretbox (HSalsa20-prekeyed)."""
    sb_key = h("79ed188791e53ced0a29f3a2f23ff318c805dc815de085eda0be2fabe30a9dab")
    nonce = h("799bdef469eeeaae0c27ca6549c1bb044958763223973800")
    ping = h("0018a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b70050494e47")
    batch = b"\x01\x00\x1f" + ping
    key = so.hsalsa20_key(sb_key)
    assert key == hsalsa20(so)(sb_key, bytes(16))
    block = so.box_seal_padded(key, nonce, batch, 16368)
    assert len(block) == 16384
    assert block[:32] == h("d832d228ee457ca3b03ae36c5d04813987e06a5c4b3e03a5531e1d5aa7aee076")
    assert hashlib.sha256(block).digest() == h("a3af345bf9a1eece41160e44ee34f22d1c51bfcbf3b8def0e1bc0689a51dcaab")
    assert block == so.box_seal(key, nonce, _framing_py.pad(batch, 16368))
    assert so.box_open_padded(key, nonce, block) == batch
    # the raw sbKey in a plain secretbox (no HSalsa20 prekeying) gives another tag
    assert so.box_seal(sb_key, nonce, _framing_py.pad(batch, 16368))[:4] != block[:4]


def test_msg_body_vector(so):
    """The server encrypts the MSG body for the recipient with rcvDhSecret."""
    assert so.x25519(SERVER_QUEUE_PRIV, CLIENT_RCV_DH_PUB) == RCV_DH_SECRET
    key = so.box_beforenm(CLIENT_RCV_DH_PUB, SERVER_QUEUE_PRIV)
    assert key == so.hsalsa20_key(RCV_DH_SECRET)
    body = h("000000006553f100 54 20 68656c6c6f")
    sealed = so.box_seal_padded(key, MSG_ID, body, 16106)
    assert len(sealed) == 16122
    assert sealed[:32] == h("4f474e79c384903b87b98be0dc0575d72f529a0a9895118410f7de57de8747ac")
    assert hashlib.sha256(sealed).digest() == h("9c3b97299090b366c18cc0a28447dafcdb610ce2db83eef9728edf8409556920")
    padded = so.box_open(key, MSG_ID, sealed)
    assert len(padded) == 16106 and padded.startswith(h("000f000000006553f100542068656c6c6f2323"))
    assert so.box_open_padded(key, MSG_ID, sealed) == body


def test_nmsg_vector(so):
    """NMSG metadata encrypted with a DH secret, padded to 128."""
    nonce = h("d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7")
    meta = ss(MSG_ID) + (1700000000).to_bytes(8, "big")
    expected = h(
        "ec5b63958213130975b056b6a184342fbf6d59abcceb8439d89cbc1a53bf3670602279c8c01c6d3f0a1f62750e063cdc"
        "337b796af48675fd32054c7941471dc2575d7ac8311d78d37075616191725d759e2c560e71aa9ed9ddbb628f19b4dd82"
        "b4b43eac9a1a510a88cbc19f8e087202307b39a45c53dd8317b6411e1aa58e44ffb0ef5f39027e1c0dd6fe4198b99dd9"
    )
    key = so.hsalsa20_key(RCV_DH_SECRET)
    assert so.box_seal_padded(key, nonce, meta, 128) == expected
    assert so.box_open_padded(key, nonce, expected) == meta


def test_ed25519_vector(so):
    """SEND signed by the sender's Ed25519 key (seed 0x80..0x9f)."""
    signer = nacl.signing.SigningKey(seed(0x80))
    public = bytes(signer.verify_key)
    assert public == h("cd14b37f956e953194ff7fb73b3d81dcc561d61a7538094b7c3e1a643ee5f3aa")
    t_for_auth = ss(SESSION) + ss(CORR) + ss(SENDER) + b"SEND T hello"
    signature = signer.sign(t_for_auth).signature
    assert signature == h(
        "999ae95e11b5d40620658c6478ef1b559415c7f97b3dbdf84a7dc5852bf4d3fb"
        "7721d08179bae90c0bc5a8c6537958fa83dce737a70626d6d8fa8f2a30032c0d"
    )
    assert so.ed25519_verify(public, signature, t_for_auth) is True
    assert so.ed25519_verify(public, signature, t_for_auth[:-1]) is False
    assert so.ed25519_verify(public, bytes([signature[0] ^ 1]) + signature[1:], t_for_auth) is False
    assert so.ed25519_verify(bytes(nacl.signing.SigningKey(seed(0)).verify_key), signature, t_for_auth) is False
    assert so.ed25519_verify(public[:31], signature, t_for_auth) is False
    assert so.ed25519_verify(public, signature[:63], t_for_auth) is False
    assert so.ed25519_verify(public, signature + b"\x00" * 50, t_for_auth) is False


def test_signature_over_split_transmission(so):
    """What the server does: split a block, verify the authorization over t_for_auth."""
    signer = nacl.signing.SigningKey(seed(0x80))
    for flags in ((True, True), (True, False), (False, False)):
        t_for_auth = ss(SESSION) + ss(CORR) + ss(SENDER) + b"SEND T hello"
        sig = signer.sign(t_for_auth).signature
        t = core.encode_transmission(sig, CORR, SENDER, b"SEND T hello", SESSION, *flags)
        [(status, auth, _, _, _, _, signed)] = core.split_block(core.encode_batch([t], 16384), SESSION, *flags)
        assert status == core.T_OK and signed == t_for_auth
        assert so.verify_batch([(bytes(signer.verify_key), auth, signed, CORR)]) == [True]


# --- errors -------------------------------------------------------------------------------

K, N = b"k" * 32, b"n" * 24


def test_wrong_key_and_nonce_sizes(so):
    for key, nonce in ((K[:31], N), (K + b"k", N), (K, N[:23]), (K, N + b"n"), (b"", b"")):
        with pytest.raises(CryptoError):
            so.box_seal(key, nonce, b"data")
        with pytest.raises(CryptoError):
            so.box_seal_padded(key, nonce, b"data", 100)
        with pytest.raises(CryptoError):
            so.box_open(key, nonce, bytes(40))
        with pytest.raises(CryptoError):
            so.box_open_padded(key, nonce, bytes(40))
    for a, b in ((K[:31], K), (K, K + b"k")):
        with pytest.raises(CryptoError):
            so.x25519(a, b)
        with pytest.raises(CryptoError):
            so.box_beforenm(a, b)
    with pytest.raises(CryptoError):
        so.hsalsa20_key(K[:31])
    with pytest.raises(CryptoError):
        hsalsa20(so)(K, bytes(15))


def test_low_order_point_is_refused(so):
    with pytest.raises(CryptoError):
        so.x25519(K, bytes(32))
    with pytest.raises(CryptoError):
        so.box_beforenm(bytes(32), K)


def test_open_failures(so):
    sealed = so.box_seal(K, N, b"hello")
    assert so.box_open(K, N, sealed) == b"hello"
    assert so.box_open(K, N, so.box_seal(K, N, b"")) == b""
    for bad in (sealed[:-1], sealed + b"x", bytes([sealed[0] ^ 1]) + sealed[1:], bytes(16), sealed[:15], b""):
        with pytest.raises(CryptoError):
            so.box_open(K, N, bad)
    with pytest.raises(CryptoError):
        so.box_open(K, b"m" * 24, sealed)


def test_padded_box_errors(so):
    with pytest.raises(CryptoError):
        so.box_seal_padded(K, N, b"abc", 4)  # does not fit its length prefix
    with pytest.raises(CryptoError):
        so.box_seal_padded(K, N, bytes(65534), 70000)
    assert len(so.box_seal_padded(K, N, b"abc", 5)) == 21
    for plaintext in (b"", b"\x00", b"\x00\x05abc"):  # authentic but badly padded
        with pytest.raises(CryptoError):
            so.box_open_padded(K, N, so.box_seal(K, N, plaintext))
    assert so.box_open_padded(K, N, so.box_seal(K, N, b"\x00\x00")) == b""


def test_padded_box_of_16k_body(so):
    body = os.urandom(16048)
    sealed = so.box_seal_padded(K, N, body, 16106)
    assert len(sealed) == 16122
    assert sealed == _sodium_py.box_seal(K, N, _framing_py.pad(body, 16106))
    assert so.box_open_padded(K, N, sealed) == body
    assert so.box_open_padded(K, N, bytearray(sealed)) == body


# --- batch verification -------------------------------------------------------------------


def mixed_requests(n: int = 60) -> list[tuple]:
    """Valid and invalid Ed25519 and X25519 requests, and some of neither kind."""
    out = []
    for i in range(n):
        message = os.urandom(i * 7 % 300)
        kind = i % 6
        if kind in (0, 1):
            signer = nacl.signing.SigningKey(os.urandom(32))
            sig = signer.sign(message).signature
            key = bytes(signer.verify_key)
            if kind == 1:
                message += b"x"
            out.append((key, sig, message, None))
        elif kind in (2, 3):
            key, nonce = os.urandom(32), os.urandom(24)
            auth = _sodium_py.box_seal(key, nonce, hashlib.sha512(message).digest())
            if kind == 3:
                nonce = bytes([nonce[0] ^ 1]) + nonce[1:]
            out.append((key, auth, message, nonce))
        elif kind == 4:
            out.append((os.urandom(57), os.urandom(114), message, None))  # Ed448: not here
        else:
            out.append((os.urandom(32), os.urandom(80), message, None))  # no nonce
    return out


def per_item(so, requests):
    result = []
    for key, auth, message, nonce in requests:
        if len(auth) == 64:
            result.append(so.ed25519_verify(key, auth, message))
        elif len(auth) == 80 and nonce is not None:
            result.append(so.authenticator_verify(key, nonce, auth, message))
        else:
            result.append(False)
    return result


def test_verify_batch_equals_per_item(so):
    requests = mixed_requests()
    expected = per_item(so, requests)
    assert expected.count(True) == 20
    assert so.verify_batch(requests) == expected
    assert so.verify_batch([]) == []
    # the same answers as PyNaCl's own Ed25519 check
    for (key, auth, message, _), ok in zip(requests, expected):
        if len(auth) == 64:
            try:
                nacl.bindings.crypto_sign_open(auth + message, key)
                assert ok
            except nacl.exceptions.BadSignatureError:
                assert not ok


def test_verify_batch_on_worker_threads(so):
    requests = mixed_requests()
    expected = per_item(so, requests)
    assert trio.run(trio.to_thread.run_sync, so.verify_batch, requests) == expected

    halves = [requests[:30], requests[30:]]
    results: list = [None, None]

    def work(i: int) -> None:
        results[i] = so.verify_batch(halves[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] + results[1] == expected


def test_verify_batch_releases_the_gil():
    """While a long batch runs on a worker thread, the main thread keeps running Python."""
    signer = nacl.signing.SigningKey(os.urandom(32))
    message = os.urandom(100)
    requests = [(bytes(signer.verify_key), signer.sign(message).signature, message, None)] * 1500
    done = threading.Event()
    span = {}

    def work() -> None:
        span["start"] = time.perf_counter()
        core.verify_batch(requests)
        span["end"] = time.perf_counter()
        done.set()

    worker = threading.Thread(target=work)
    stamps = []
    worker.start()
    while not done.is_set():
        stamps.append(time.perf_counter())
    worker.join()
    inside = [t for t in stamps if span["start"] <= t <= span["end"]]
    edges = [span["start"], *inside, span["end"]]
    longest_gap = max(b - a for a, b in zip(edges, edges[1:]))
    duration = span["end"] - span["start"]
    assert longest_gap < 0.5 * duration, (longest_gap, duration)


# --- loading ------------------------------------------------------------------------------


def _run(code: str, **env_changes: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=60
    )


def test_missing_libsodium_falls_back_to_pure_with_one_warning():
    code = """
        import warnings
        import nacl._sodium
        nacl._sodium.__file__ = "/nonexistent/_sodium.so"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import smpfast._core as core
        messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert core.COMPILED is False, core.COMPILED
        assert core.pad is core._framing_py.pad and core.verify_batch is core._sodium_py.verify_batch
        assert len(messages) == 1, messages
        print(messages[0])
    """
    proc = _run(code, SMPFAST_PURE=None)
    assert proc.returncode == 0, proc.stderr
    if importlib.util.find_spec("smpfast._core.sodium") is not None:
        assert "dlopen" in proc.stdout  # the extension is there: libsodium was what failed


def test_pure_switch():
    code = "import smpfast._core as c; print(c.COMPILED)"
    assert _run(code, SMPFAST_PURE="1").stdout.strip() == "False"
    if not core._want_pure():  # a run that demands the compiled core
        assert _run(code, SMPFAST_PURE=None).stdout.strip() == "True"
