"""What the inspection reads from files: certificate expiry (breach under the
line), ERROR lines in text and JSON logs since the last report, the newest
finished backup."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from config import logs
from config.settings import load
from engine.inspection import Status
from usecases.inspection import latest_backup, log_errors
from usecases.probes import certificates

NOW = datetime.now(UTC)


def cert(path: Path, days: int) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unit-sign")])
    c = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=300))
        .not_valid_after(NOW + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(c.public_bytes(serialization.Encoding.PEM))


def test_a_certificate_near_expiry_is_a_breach(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cert(tmp_path / "unit-sign.pem", days=10)
    monkeypatch.setenv("EBILL_TLS", "0")
    monkeypatch.setenv("EBILL_SIGNER_CERT_FILE", str(tmp_path / "unit-sign.pem"))
    (check,) = certificates(load(), NOW)
    assert check.key == "cert:signer_key" and check.status is Status.BREACH
    assert 9.9 <= (check.value or 0) <= 10.0
    assert "renew" in check.advice
    monkeypatch.setenv("EBILL_CERT_MIN_DAYS", "7")
    (check,) = certificates(load(), NOW)
    assert check.status is Status.OK
    (tmp_path / "unit-sign.pem").write_text("not a certificate")
    (check,) = certificates(load(), NOW)
    assert check.status is Status.BREACH and "unit-sign.pem" in check.detail


def test_errors_counted_in_text_and_json_logs_since_the_last_report(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    old = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - 7200))
    new = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - 60))
    (log_dir / "engine.log.1").write_text(
        f"{old},001 ebill.server ERROR before the last report\n"
        f"{new},002 ebill.server ERROR database not answering\n"
        f"{new},003 ebill.server WARNING only a warning\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("EBILL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EBILL_LOG_FORMAT", "json")
    monkeypatch.setenv("EBILL_LOG_FILE", str(log_dir / "engine.log"))
    settings = load()
    root = logging.getLogger()
    # configure() closes the handlers it replaces: give it none of pytest's.
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    handler = logs.configure(settings)
    try:
        logging.getLogger("ebill.test").error("platform refused")
        logging.getLogger("ebill.test").info("fine")
    finally:
        root.removeHandler(handler)
        handler.close()
    since = time.time() - 3600
    check = log_errors(settings, since)
    assert check.value == 2 and check.status is Status.BREACH
    assert json.loads((log_dir / "engine.log").read_text().splitlines()[0])["level"] == "ERROR"
    monkeypatch.setenv("EBILL_LOG_ERROR_MAX", "2")
    assert log_errors(load(), since).status is Status.OK


def test_the_newest_finished_backup(tmp_path: Path) -> None:
    assert latest_backup(tmp_path) is None
    for name, at in (("ebill-a", NOW - timedelta(hours=30)), ("ebill-b", NOW - timedelta(hours=2))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "db.dump").write_bytes(b"x" * 100)
        (tmp_path / name / "manifest.json").write_text(json.dumps({"at": at.isoformat()}))
    (tmp_path / "ebill-c").mkdir()  # unfinished: no manifest
    (tmp_path / "ebill-c" / "db.dump").write_bytes(b"x")
    newest = latest_backup(tmp_path)
    assert newest is not None and newest.path.name == "ebill-b" and newest.size_bytes > 100
