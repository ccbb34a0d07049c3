"""SM2 pinned by the GB/T 32918 vectors, and cross-checked against gmssl."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from gmssl import sm2 as gm

from engine import sm2
from tests.gm_reference import gm_verify, textbook_verify

D_A = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
K = "59276E27D506861A16680F3AD9C02DCCEF3CC1FA3CDBE4CE6D54B80DEAC1BC21"
Z_A = "B2E14C5C79C6DF5B85F4FE7ED8DB7A262B9DA7E07CCB0EA9F4747B8CCDA8A4F3"
E = "F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640"
R = 0xF5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3
S = 0xB1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA
M = b"message digest"


def test_z_a_and_e_match_the_standard_vector() -> None:
    key = sm2.SigningKey.from_secret(D_A)
    assert sm2.z_a(key.public.point).hex().upper() == Z_A
    assert sm2.digest(key.public.point, M).hex().upper() == E


def test_vector_signature_verifies_natively_and_with_gmssl() -> None:
    key = sm2.SigningKey.from_secret(D_A)
    der = sm2.encode_signature(R, S)
    assert key.public.verify(M, der)
    assert gm_verify(key.public.point, M, der)
    assert not key.public.verify(b"message digesT", der)


def test_gmssl_with_the_vector_k_reproduces_r_and_s() -> None:
    key = sm2.SigningKey.from_secret(D_A)
    crypt = gm.CryptSM2(private_key=f"{D_A:064x}", public_key=key.public.point[1:].hex())
    # gmssl signs the digest it is given; hand it e = SM3(Z_A || M).
    sig = crypt.sign(sm2.digest(key.public.point, M), K.lower())
    assert (int(sig[:64], 16), int(sig[64:], 16)) == (R, S)


def test_native_signatures_verify_with_gmssl_and_back() -> None:
    key = sm2.SigningKey.generate()
    for msg in (b"", b"x", "电子票据".encode(), bytes(range(256)) * 10):
        der = key.sign(msg)
        assert gm_verify(key.public.point, msg, der)
        r, s = decode_dss_signature(der)
        assert sm2.decode_signature(der) == (r, s)
    crypt = gm.CryptSM2(private_key=f"{key.secret:064x}", public_key=key.public.point[1:].hex())
    rs = crypt.sign_with_sm3(b"from gmssl")
    assert key.public.verify(
        b"from gmssl", sm2.encode_signature(int(rs[:64], 16), int(rs[64:], 16))
    )


def test_garbage_signatures_are_rejected_not_raised() -> None:
    key = sm2.SigningKey.generate()
    for bad in (b"", b"\x30\x00", b"\x30\x06\x02\x01\x01\x02\x01\x01", b"\xff" * 72):
        assert not key.public.verify(b"m", bad)


def test_der_round_trip_and_pem_round_trip() -> None:
    for r, s in ((1, 1), (R, S), (2**255, 2**256 - 1)):
        assert sm2.decode_signature(sm2.encode_signature(r, s)) == (r, s)
    key = sm2.SigningKey.generate()
    assert sm2.SigningKey.from_pem(key.to_pem()).public == key.public


def test_textbook_fallback_agrees_with_the_standard_vector() -> None:
    key = sm2.SigningKey.from_secret(D_A)
    assert textbook_verify(key.public.point, M, R, S)
    assert not textbook_verify(key.public.point, M, R, S - 1)
    assert not textbook_verify(key.public.point, b"other", R, S)


def test_gmssl_crash_case_is_settled_by_the_textbook_check() -> None:
    # A valid signature on which gmssl 3.2.2 raises TypeError instead of answering.
    pub = bytes.fromhex(
        "04043218c0a6f4c53691a47a183e8e63d8b61af7c48a08308b4dae97350f7b21a0"
        "c9bb2a6bb1b188cf56856226e4b846b6451e1684470551a91f9ced0aac629767"
    )
    r = 0x4684B877C187C45E9D14F711B80F09AD58171754A0B793FBAD3DEF58BB9FBFD8
    s = 0xC7DE32133AEA505C4656EDB5ABB9A6A4931FF8B635AB6BC0F7063E6308F07AD4
    msg = bytes(range(256)) * 10
    assert gm_verify(pub, msg, sm2.encode_signature(r, s))
    assert not gm_verify(pub, msg + b"!", sm2.encode_signature(r, s))
