"""Probes of the inspection (usecases.inspection): certificate and key expiry,
the signing server signing a probe with the unit key, the fiscal platform
answering with its pinned key."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from clients.fiscal import FiscalClient
from clients.signer import SignerClient
from config.settings import Settings, read_public_key
from engine.inspection import Check, Status, at_least

__all__ = ["PROBE_MESSAGE", "certificates", "platform_probe", "signer_probe"]

PROBE_TIMEOUT_S = 10.0
PROBE_MESSAGE = b"ebill inspection probe"


def _cert_files(settings: Settings) -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    if settings.tls:
        files += [
            ("engine TLS certificate", settings.tls_cert_file),
            ("TLS CA", settings.tls_ca_file),
        ]
        for hop, d in (("signer", settings.signer_tls_dir), ("platform", settings.fiscal_tls_dir)):
            if d is not None:
                files += [
                    (f"{hop} hop client certificate", d / "client.pem"),
                    (f"{hop} hop CA", d / "ca.pem"),
                ]
    if settings.signer_cert_file is not None:
        files.append(("unit signing key certificate", settings.signer_cert_file))
    return files


def certificates(settings: Settings, now: datetime) -> list[Check]:
    out: list[Check] = []
    for label, path in _cert_files(settings):
        key = f"cert:{path.name}" if "signing key" not in label else "cert:signer_key"
        try:
            certs = x509.load_pem_x509_certificates(path.read_bytes())
        except (OSError, ValueError) as exc:
            out.append(
                Check(
                    "Certificates and keys",
                    key,
                    label,
                    Status.BREACH,
                    detail=f"{path}: {exc}",
                    advice=f"put a valid PEM certificate at {path}",
                )
            )
            continue
        soonest = min(certs, key=lambda c: c.not_valid_after_utc)
        days = (soonest.not_valid_after_utc - now).total_seconds() / 86400
        out.append(
            at_least(
                "Certificates and keys",
                key,
                f"{label} expires in",
                round(days, 1),
                settings.cert_min_days,
                unit="days",
                detail=f"{soonest.subject.rfc4514_string()} until "
                f"{soonest.not_valid_after_utc:%Y-%m-%d} ({path})",
                advice=f"renew {path} before {soonest.not_valid_after_utc:%Y-%m-%d} "
                "and restart (rolling) the processes that serve it",
            )
        )
    return out


def _cert_point(path: Path) -> bytes:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    pub = cert.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic-curve key")
    return pub.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


async def _timed(what: Awaitable[None]) -> float:
    started = time.perf_counter()
    await asyncio.wait_for(what, PROBE_TIMEOUT_S)
    return (time.perf_counter() - started) * 1000


async def signer_probe(settings: Settings) -> Check:
    """The signing server signs a probe with the unit key, and it verifies here."""
    title = f"signing server {settings.signer_addr} signs with {settings.signer_key_id}"

    async def probe() -> None:
        tls = settings.hop_tls(settings.signer_tls_dir)
        async with SignerClient(settings.signer_addr, settings.signer_key_id, tls=tls) as signer:
            pub = await signer.public_key()
            (sig,) = await signer.sign_batch([PROBE_MESSAGE])
        if not pub.verify(PROBE_MESSAGE, sig):
            raise ValueError("its signature of the probe does not verify with its public key")
        if (
            settings.signer_cert_file is not None
            and _cert_point(settings.signer_cert_file) != pub.point
        ):
            raise ValueError(f"it signs with a key other than {settings.signer_cert_file}'s")

    try:
        ms = await _timed(probe())
    except Exception as exc:  # any failure is what the report must show
        return Check(
            "Signing server and fiscal platform",
            "signer",
            title,
            Status.BREACH,
            detail=f"{type(exc).__name__}: {exc}"[:300],
            advice="bills cannot be signed: check the signing server (HSM) and its hop",
        )
    return Check(
        "Signing server and fiscal platform",
        "signer",
        title,
        Status.OK,
        round(ms, 1),
        "ms",
        detail="probe signed and verified",
    )


async def platform_probe(settings: Settings) -> Check:
    title = f"fiscal platform {settings.fiscal_addr} answers"

    async def probe() -> None:
        tls = settings.hop_tls(settings.fiscal_tls_dir)
        async with FiscalClient(settings.fiscal_addr, tls=tls) as fiscal:
            pub = await fiscal.public_key()
        if settings.fiscal_public_key_file:
            if read_public_key(settings.fiscal_public_key_file) != pub.point:
                raise ValueError("it offers a key other than the pinned one")

    try:
        ms = await _timed(probe())
    except (Exception, SystemExit) as exc:
        return Check(
            "Signing server and fiscal platform",
            "platform",
            title,
            Status.BREACH,
            detail=f"{type(exc).__name__}: {exc}"[:300],
            advice="bills stay pending until it answers: check the platform link",
        )
    return Check(
        "Signing server and fiscal platform",
        "platform",
        title,
        Status.OK,
        round(ms, 1),
        "ms",
        detail="public key fetched"
        + (" and matches the pin" if settings.fiscal_public_key_file else ""),
    )
