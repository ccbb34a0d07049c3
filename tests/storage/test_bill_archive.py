"""The archive ZIP and the issued-versus-archived difference against a real
PostgreSQL (issue #16 item 4), checked with gmssl as a records office would:
the manifest's signature, every file's SM3, each bill's two signatures. The
PDFs come from a stand-in here (rendering has its own tests; the e2e test takes
them from usecases.rendering on a whole stack)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import asyncpg
import pytest
from gmssl import func, sm3

from engine.canonical import countersign_message
from engine.errors import InvalidArgument
from engine.model import CST
from engine.pipeline import finish
from engine.sm2 import VerifyingKey
from storage.archive import archive
from storage.bills import reserve
from tests.factories import RING
from tests.gm_reference import gm_verify
from tests.rendering_support import FISCAL
from tests.rendering_support import UNIT as UNIT_KEY
from tests.storage.test_reserve import UNIT, prepared, setup, work
from usecases.bill_archive import Archive


class Signer:
    async def sign_batch(
        self, messages: Sequence[bytes], timeout_s: float | None = None
    ) -> list[bytes]:
        return [UNIT_KEY.sign(m) for m in messages]

    async def public_key(self) -> VerifyingKey:
        return UNIT_KEY.public


class Pdfs:
    async def pdf(self, bill_code: str, bill_no: str, check_code: str | None) -> bytes:
        return f"%PDF-1.7 {bill_code}/{bill_no}".encode()


async def test_the_zip_holds_every_archived_bill_under_a_signed_manifest(
    db: asyncpg.Pool,
) -> None:
    await setup(db, numbers=20)
    out = await reserve(db, [(i, prepared(i + 1)) for i in range(4)], ring=RING)
    works = [work(out[i]) for i in range(4)]
    done = []
    for w in works[:3]:  # the fourth stays pending: issued, not archived
        unit_sig = UNIT_KEY.sign(w.canonical)
        fiscal_sig = FISCAL.sign(countersign_message(w.canonical, unit_sig))
        done.append(finish(replace(w, unit_signature=unit_sig, fiscal_signature=fiscal_sig)))
    await archive(db, done)
    today = datetime.now(UTC).astimezone(CST).date()
    archive_ = Archive(db, RING, Pdfs(), Signer())

    made = await archive_.zip(UNIT, today, today)
    assert made.bills == 3 and made.name.endswith(".zip")
    with zipfile.ZipFile(io.BytesIO(made.data)) as z:
        files = {n: z.read(n) for n in z.namelist()}
    manifest, signature = files.pop("manifest.json"), files.pop("manifest.sig")
    unit_key = bytes.fromhex(files["unit.pub"].decode())
    assert unit_key == UNIT_KEY.public.point
    assert gm_verify(unit_key, manifest, signature)
    listed = json.loads(manifest)
    assert set(listed["sm3"]) == set(files)
    for name, data in files.items():
        assert sm3.sm3_hash(func.bytes_to_list(data)) == listed["sm3"][name], name
    assert sorted(listed["bills"]) == sorted(f"{w.bill_code}/{w.bill_no}" for w in works[:3])
    for w in works[:3]:
        folder = f"{w.bill_code}-{w.bill_no}/"
        canonical, unit_sig = files[folder + "canonical.bin"], files[folder + "unit.sig"]
        assert canonical == w.canonical and gm_verify(unit_key, canonical, unit_sig)
        fiscal_sig = files[folder + "fiscal.sig"]
        assert gm_verify(FISCAL.public.point, canonical + unit_sig, fiscal_sig)
    pending = works[3]
    assert not any(n.startswith(f"{pending.bill_code}-{pending.bill_no}/") for n in files)
    # A changed file no longer has its digest; a changed manifest no longer verifies.
    assert not gm_verify(unit_key, manifest.replace(b"canonical", b"Canonical"), signature)

    # The difference: the pending bill, and only it; retry makes it due now, logged.
    [missing] = await archive_.difference(UNIT, today, today)
    assert (missing.bill_id, missing.status.value) == (pending.bill_id, "reserved")
    await db.execute(
        "UPDATE outbox SET next_attempt_at = now() + interval '1 hour' WHERE bill_id = $1",
        pending.bill_id,
    )
    assert await archive_.retry(UNIT, [pending.bill_id, works[0].bill_id], operator="admin") == 1
    due = await db.fetchval("SELECT next_attempt_at <= now() FROM outbox WHERE bill_id = $1",
                            pending.bill_id)  # fmt: skip
    assert due
    logged = await db.fetchval(
        "SELECT count(*) FROM log_entries WHERE op = 'archive.retry' AND bill_id = $1",
        pending.bill_id,
    )
    assert logged == 1
    with pytest.raises(InvalidArgument):
        await archive_.zip(UNIT, today, today.replace(year=today.year - 1))
