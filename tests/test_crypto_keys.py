"""Key DER codecs: SPKI prefixes, keys of fixed seeds (known answers), round trips."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, x448, x25519
from hypothesis import given, settings
from hypothesis import strategies as st

from smpfast.crypto import der
from smpfast.crypto.keys import (
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
    spki_prefix,
    x25519_raw,
)

H = bytes.fromhex


def seed(start: int) -> bytes:
    return bytes(range(start, start + 32))


# SPKI prefixes (as the reference's x509 encodePK writes them) and a key of a fixed seed
PREFIXES = {
    Alg.ED25519: "302a300506032b6570032100",
    Alg.X25519: "302a300506032b656e032100",
    Alg.ED448: "3043300506032b6571033a00",
    Alg.X448: "3042300506032b656f033900",
}
RECIPIENT_DER = H("302a300506032b657003210003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8")


def test_spki_prefixes():
    for alg, hx in PREFIXES.items():
        assert spki_prefix(alg).hex() == hx
        assert len(encode_public_key(alg, bytes(alg.raw_len))) == {32: 44, 57: 69, 56: 68}[alg.raw_len]


def test_fixed_input_public_keys():
    expected = {
        (Alg.ED25519, 0x00): "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8",
        (Alg.ED25519, 0x80): "cd14b37f956e953194ff7fb73b3d81dcc561d61a7538094b7c3e1a643ee5f3aa",
        (Alg.X25519, 0x40): "79a631eede1bf9c98f12032cdeadd0e7a079398fc786b88cc846ec89af85a51a",
        (Alg.X25519, 0x60): "675dd574ed7789310b3d2e7681f3790b466c773b1521fecf36577958371ea52f",
        (Alg.X25519, 0x80): "493e82fc74464a59268817623d2053c5eb8e2cc4a988b4fee179ec6b010d531d",
        (Alg.X25519, 0xA0): "605a725d2a4adfeeb1a29e17edd621c1b7593ee8cdbc44ac6c4ab6e2f805d23c",
        (Alg.X25519, 0xC0): "dc2cca31e8e43bbd91dff7e475cca3347eb478107d5bd765aba4ae4a30c35d44",
    }
    for (alg, start), pub in expected.items():
        assert PrivateKey(alg, seed(start)).public.raw.hex() == pub
    rcp = PrivateKey(Alg.ED25519, seed(0))
    assert rcp.public.der == RECIPIENT_DER
    assert base64.b64encode(RECIPIENT_DER) == b"MCowBQYDK2VwAyEAA6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
    assert decode_public_key(RECIPIENT_DER) == rcp.public


@pytest.mark.parametrize(
    "b64, alg",
    [
        ("MCowBQYDK2VwAyEAfAOflyvbJv1fszgzkQ6buiZJVgSpQWsucXq7U6zjMgY=", Alg.ED25519),
        ("MCowBQYDK2VuAyEAriy+HcARIhqsgSjVnjKqoft+y6pxrxdY68zn4+LjYhQ=", Alg.X25519),
        ("MCowBQYDK2VwAyEA139Oqs4QgpqbAmB0o7rZf6T19ryl7E65k4AYe0kE3Qs=", Alg.ED25519),
        ("MEMwBQYDK2VxAzoA6ibQc9XpkSLtwrf7PLvp81qW/etiumckVFImCMRdftcG/XopbOSaq9qyLhrgJWKOLyNrQPNVvpMA", Alg.ED448),
        ("MCowBQYDK2VuAyEA4JGSMYht18H4mas/jHeBwfcM7jLwNYJNOAhi2/g4RXg=", Alg.X25519),
    ],
)
def test_reference_keys_decode(b64, alg):
    d = base64.b64decode(b64)
    k = decode_public_key(d)
    assert k.alg is alg and k.der == d and PublicKey.from_der(d) == k


def test_algorithm_restrictions():
    keys = {alg: encode_public_key(alg, bytes(range(alg.raw_len))) for alg in Alg}
    for alg, d in keys.items():
        assert decode_public_key(d).alg is alg
        for fn, ok in ((decode_auth_key, {Alg.ED25519, Alg.ED448, Alg.X25519}),
                       (decode_verify_key, {Alg.ED25519, Alg.ED448}),
                       (decode_dh_key, {Alg.X25519})):
            if alg in ok:
                assert fn(d).alg is alg
            else:
                with pytest.raises(KeyFormatError):
                    fn(d)
    assert x25519_raw(keys[Alg.X25519]) == bytes(range(32))


def _crypto_spki(k) -> bytes:
    return k.public_key().public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)


def test_agrees_with_openssl():
    for mod, alg in ((ed25519.Ed25519PrivateKey, Alg.ED25519), (x25519.X25519PrivateKey, Alg.X25519),
                     (ed448.Ed448PrivateKey, Alg.ED448), (x448.X448PrivateKey, Alg.X448)):
        k = mod.generate()
        d = _crypto_spki(k)
        pub = decode_public_key(d)
        assert pub.alg is alg and pub.der == d
        assert as_public_key(k.public_key()) == pub
        if alg is not Alg.X448:
            ours = as_private_key(k)
            assert ours.public == pub
            assert ours.der == k.private_bytes(ser.Encoding.DER, ser.PrivateFormat.PKCS8, ser.NoEncryption())


def test_private_key_pkcs8_and_sign():
    for alg in (Alg.ED25519, Alg.X25519, Alg.ED448):
        k = generate_private_key(alg)
        assert decode_private_key(k.der).raw == k.raw
        assert PrivateKey.from_der(k.der).public == k.public
        loaded = ser.load_der_private_key(k.der, None)
        assert _crypto_spki(loaded) == k.public.der
        if alg is Alg.X25519:
            with pytest.raises(Exception):
                k.sign(b"x")
        else:
            sig = k.sign(b"message")
            assert len(sig) == {Alg.ED25519: 64, Alg.ED448: 114}[alg]
            loaded.public_key().verify(sig, b"message")
    assert PrivateKey(Alg.ED25519, seed(0)).der.hex().startswith("302e020100300506032b657004220420")
    assert PrivateKey(Alg.X25519, seed(0)).der.hex().startswith("302e020100300506032b656e04220420")


def test_nacl_objects():
    import nacl.public
    import nacl.signing

    sk = nacl.signing.SigningKey(seed(0))
    assert as_private_key(sk).public.raw == bytes(sk.verify_key)
    assert as_public_key(sk.verify_key).alg is Alg.ED25519
    pk = nacl.public.PrivateKey(seed(0x40))
    assert as_private_key(pk).public.raw == bytes(pk.public_key)
    assert as_public_key(pk.public_key).alg is Alg.X25519
    with pytest.raises(KeyFormatError):
        as_public_key(pk.public_key, frozenset({Alg.ED25519}))
    with pytest.raises(KeyFormatError):
        as_private_key(object())


@pytest.mark.parametrize(
    "hexder",
    [
        "",
        "30",
        "302a300506032b6570032100" + "00" * 31,  # short raw key
        "302b300506032b6570032200" + "00" * 33,  # long raw key
        "302a300506032b6570032100" + "00" * 32 + "00",  # trailing byte
        "302a300506032b6571032100" + "00" * 32,  # Ed448 OID with a 32-byte key
        "302a300506032b6599032100" + "00" * 32,  # unknown OID
        "302c300706032b65700500032100" + "00" * 32,  # NULL parameters
        "302a300506032b6570032101" + "00" * 32,  # unused bits
        "302a300506032b6570042100" + "00" * 32,  # OCTET STRING instead of BIT STRING
        "31 2a300506032b6570032100".replace(" ", "") + "00" * 32,  # SET
        "30812a300506032b6570032100" + "00" * 32,  # non-minimal length
        "3080300506032b6570032100" + "00" * 32 + "0000",  # indefinite length
        "302a300506032b6570032100" + "00" * 32 + "302a300506032b6570032100" + "00" * 32,  # two keys
    ],
)
def test_malformed_public_keys(hexder):
    with pytest.raises(KeyFormatError):
        decode_public_key(H(hexder))


def test_generic_parse_equals_fast_path():
    # A key whose DER passes the generic path (no fast path length) is still rejected or
    # decoded identically: re-encode the Ed448 key through the generic parser.
    k = generate_private_key(Alg.ED448).public
    from smpfast.crypto.keys import _parse_spki

    assert _parse_spki(k.der) == (Alg.ED448, k.raw)
    assert _parse_spki(RECIPIENT_DER) == (Alg.ED25519, RECIPIENT_DER[12:])


def test_der_long_lengths():
    for n in (0, 127, 128, 255, 256, 70000):
        e = der.tlv(der.OCTET_STRING, bytes(n))
        assert der.expect_one(e, der.OCTET_STRING) == (len(e) - n, len(e))


ALGS = st.sampled_from([Alg.ED25519, Alg.X25519, Alg.ED448, Alg.X448])


@given(ALGS, st.data())
def test_public_key_round_trip(alg, data):
    raw = data.draw(st.binary(min_size=alg.raw_len, max_size=alg.raw_len))
    d = encode_public_key(alg, raw)
    k = decode_public_key(d)
    assert (k.alg, k.raw, k.der) == (alg, raw, d)
    from smpfast.crypto.keys import _parse_spki

    assert _parse_spki(d) == (alg, raw)


@given(st.binary(max_size=120))
def test_random_bytes_raise_only_key_error(data):
    try:
        k = decode_public_key(data)
    except KeyFormatError:
        return
    assert k.der == data  # anything accepted is canonical


@settings(max_examples=300)
@given(ALGS, st.data())
def test_mutated_der_raises_only_key_error(alg, data):
    d = bytearray(encode_public_key(alg, bytes(alg.raw_len)))
    op = data.draw(st.sampled_from(["flip", "cut", "extend", "insert"]))
    i = data.draw(st.integers(0, len(d) - 1))
    if op == "flip":
        d[i] ^= data.draw(st.integers(1, 255))
    elif op == "cut":
        del d[i:]
    elif op == "extend":
        d += data.draw(st.binary(min_size=1, max_size=4))
    else:
        d[i:i] = data.draw(st.binary(min_size=1, max_size=3))
    try:
        k = decode_public_key(bytes(d))
    except KeyFormatError:
        return
    assert k.der == bytes(d)


@given(st.binary(max_size=80))
def test_random_private_der_raises_only_key_error(data):
    try:
        decode_private_key(data)
    except KeyFormatError:
        pass
