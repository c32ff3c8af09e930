"""The client's server-chain check, without a network."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from smpfast.transport import TLSIdentityError, key_hash, verify_server_chain
from smpfast.testing.throwaway_certs import make_cert, new_key

DER = serialization.Encoding.DER


def der(cert) -> bytes:
    return cert.public_bytes(DER)


@pytest.fixture(scope="module", params=["ed25519", "ed448"])
def chain(request):
    """[leaf, CA] as DER, the CA's key hash, and the keys/certs to build variants."""
    alg = request.param
    ca_key = new_key(alg)
    ca = make_cert(ca_key, "SMP server CA", ca=True)
    leaf_key = new_key(alg)
    leaf = make_cert(leaf_key, "localhost", issuer_key=ca_key, issuer_cert=ca, ca=False)
    return {"alg": alg, "ca_key": ca_key, "ca": ca, "leaf": leaf, "leaf_key": leaf_key}


def test_key_hash_is_sha256_of_der(chain):
    assert key_hash(der(chain["ca"])) == hashlib.sha256(der(chain["ca"])).digest()
    assert len(key_hash(der(chain["ca"]))) == 32


def test_valid_two_chain_passes(chain):
    verify_server_chain([der(chain["leaf"]), der(chain["ca"])], key_hash(der(chain["ca"])))


def test_wrong_key_hash_refused(chain):
    with pytest.raises(TLSIdentityError, match="key hash"):
        verify_server_chain([der(chain["leaf"]), der(chain["ca"])], bytes(32))
    # The leaf's hash is not the identity either.
    with pytest.raises(TLSIdentityError):
        verify_server_chain([der(chain["leaf"]), der(chain["ca"])], key_hash(der(chain["leaf"])))


@pytest.mark.parametrize("length", [0, 1, 5])
def test_chain_length_outside_2_to_4_refused(chain, length):
    certs = [der(chain["leaf"])] + [der(chain["ca"])] * (length - 1) if length else []
    with pytest.raises(TLSIdentityError, match="expected 2 to 4"):
        verify_server_chain(certs, key_hash(der(chain["ca"])))


def test_leaf_not_signed_by_identity_cert_refused(chain):
    other_key = new_key(chain["alg"])
    other_ca = make_cert(other_key, "SMP server CA", ca=True)  # same name, other key
    leaf = make_cert(new_key(), "localhost", issuer_key=other_key, issuer_cert=other_ca, ca=False)
    with pytest.raises(TLSIdentityError, match="not issued by"):
        verify_server_chain([der(leaf), der(chain["ca"])], key_hash(der(chain["ca"])))


def test_issuer_without_ca_flag_refused(chain):
    not_ca = make_cert(chain["ca_key"], "SMP server CA", ca=False)
    leaf = make_cert(
        new_key(), "localhost", issuer_key=chain["ca_key"], issuer_cert=not_ca, ca=False
    )
    with pytest.raises(TLSIdentityError, match="not a CA"):
        verify_server_chain([der(leaf), der(not_ca)], key_hash(der(not_ca)))


def test_expired_and_not_yet_valid_refused(chain):
    good = [der(chain["leaf"]), der(chain["ca"])]
    kh = key_hash(der(chain["ca"]))
    now = datetime.datetime.now(datetime.UTC)
    with pytest.raises(TLSIdentityError, match="validity"):
        verify_server_chain(good, kh, now=now + datetime.timedelta(days=365 * 20))
    with pytest.raises(TLSIdentityError, match="validity"):
        verify_server_chain(good, kh, now=now - datetime.timedelta(days=30))
    old = make_cert(
        new_key(), "localhost", issuer_key=chain["ca_key"], issuer_cert=chain["ca"], ca=False,
        not_before=now - datetime.timedelta(days=10), days=5,
    )
    with pytest.raises(TLSIdentityError, match="validity"):
        verify_server_chain([der(old), der(chain["ca"])], kh)


def test_three_and_four_chains(chain):
    """idCert is chain[1] (an intermediate); the last certificate is the trust anchor."""
    alg = chain["alg"]
    root_key = new_key(alg)
    root = make_cert(root_key, "root", ca=True)
    mid_key = new_key(alg)
    mid = make_cert(mid_key, "mid", issuer_key=root_key, issuer_cert=root, ca=True)
    mid2_key = new_key(alg)
    mid2 = make_cert(mid2_key, "mid2", issuer_key=mid_key, issuer_cert=mid, ca=True)
    leaf3 = make_cert(new_key(alg), "leaf", issuer_key=mid_key, issuer_cert=mid, ca=False)
    leaf4 = make_cert(new_key(alg), "leaf", issuer_key=mid2_key, issuer_cert=mid2, ca=False)
    verify_server_chain([der(leaf3), der(mid), der(root)], key_hash(der(mid)))
    verify_server_chain([der(leaf4), der(mid2), der(mid), der(root)], key_hash(der(mid2)))
    with pytest.raises(TLSIdentityError):  # identity is chain[1], not the root
        verify_server_chain([der(leaf3), der(mid), der(root)], key_hash(der(root)))
    other_root_key = new_key(alg)
    other_root = make_cert(other_root_key, "root", ca=True)
    with pytest.raises(TLSIdentityError, match="not issued by"):
        verify_server_chain([der(leaf3), der(mid), der(other_root)], key_hash(der(mid)))


def test_ecdsa_chain_is_checked_too():
    """Signature checks are not limited to Ed25519/Ed448 keys (the TLS profile is)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = make_cert(ca_key, "ca", ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = make_cert(leaf_key, "l", issuer_key=ca_key, issuer_cert=ca, ca=False)
    verify_server_chain([der(leaf), der(ca)], key_hash(der(ca)))


def test_garbage_der_refused(chain):
    junk = b"\x30\x03\x02\x01\x01"
    with pytest.raises(TLSIdentityError, match="malformed"):
        verify_server_chain([junk, der(chain["ca"])], key_hash(der(chain["ca"])))
