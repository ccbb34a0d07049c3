"""The plain-Python SM2 backend (where tongsuopy has no wheel, or
EBILL_SM2_BACKEND=python): the standard vector, interoperability with Tongsuo and
gmssl both ways, the same PEM keys, and the fallback taken with a warning when
tongsuopy cannot be imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import sm2, sm2_python
from tests.gm_reference import gm_verify
from tests.unit.test_sm2 import D_A, E, M, R, S

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def python_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sm2, "BACKEND", "python")
    monkeypatch.setattr(sm2, "_tongsuo", None)


def test_the_standard_vector_under_the_python_backend(python_backend: None) -> None:
    key = sm2.SigningKey.from_secret(D_A)
    assert sm2.digest(key.public.point, M).hex().upper() == E
    assert key.public.verify(M, sm2.encode_signature(R, S))
    assert not key.public.verify(b"message digesT", sm2.encode_signature(R, S))
    assert not key.public.verify(M, b"\x30\x00")


def test_python_signatures_verify_with_tongsuo_and_gmssl(monkeypatch: pytest.MonkeyPatch) -> None:
    native = sm2.SigningKey.generate()
    native_sig = native.sign(M)
    monkeypatch.setattr(sm2, "BACKEND", "python")
    monkeypatch.setattr(sm2, "_tongsuo", None)
    key = sm2.SigningKey.generate()
    sig = key.sign(M)
    pem = key.to_pem()
    same_native = sm2.SigningKey.from_secret(native.secret)
    assert same_native.public.point == native.public.point
    # Tongsuo's signature verifies in Python, and the other way round below.
    assert sm2.VerifyingKey(native.public.point).verify(M, native_sig)
    monkeypatch.undo()
    assert sm2.BACKEND == "tongsuo"
    assert sm2.VerifyingKey(key.public.point).verify(M, sig)
    assert gm_verify(key.public.point, M, sig)
    # One PEM for both: keys made under one backend load under the other.
    assert sm2.SigningKey.from_pem(pem).secret == key.secret
    assert sm2_python.secret_from_pem(native.to_pem()) == native.secret


def test_the_fallback_is_taken_with_a_warning_when_tongsuopy_is_missing() -> None:
    # A fresh interpreter where the import fails, as on Linux ARM64.
    code = (
        "import sys; sys.modules['tongsuopy'] = None\n"
        "from engine import sm2\n"
        "k = sm2.SigningKey.generate(); print(sm2.BACKEND, k.public.verify(b'x', k.sign(b'x')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "EBILL_SM2_BACKEND"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["python", "True"]
    assert "tongsuopy is not available" in out.stderr and "12x slower" in out.stderr


def test_the_backend_is_chosen_by_setting() -> None:
    for wanted, backend in (("python", "python"), ("tongsuo", "tongsuo"), ("auto", "tongsuo")):
        out = subprocess.run(
            [sys.executable, "-c", "from engine import sm2; print(sm2.BACKEND)"],
            cwd=ROOT,
            env={**os.environ, "EBILL_SM2_BACKEND": wanted},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.stdout.strip() == backend, out.stderr
    bad = subprocess.run(
        [sys.executable, "-c", "from engine import sm2"],
        cwd=ROOT,
        env={**os.environ, "EBILL_SM2_BACKEND": "openssl"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "EBILL_SM2_BACKEND: must be" in bad.stderr
