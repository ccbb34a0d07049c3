"""Personal data at rest against a real PostgreSQL (issue #12, item 5).

Bills with a known payer are issued, red-flushed, back-entered and recorded
offline; then every table is read raw (each row cast to text) and, for a
database of its own, dumped with pg_dump: no payer ID card number, phone,
e-mail, card number or name appears. Search by ID card still finds the bills.
Rotation: rows sealed under key 1 open after a rotation to key 2, new rows are
sealed under key 2, and a re-seal moves the old ones. A database from before
migration 0010, holding plaintext, is sealed by the re-seal step.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio

from engine.errors import DataLoss
from engine.lifecycle import BillKey, red_prepared
from engine.model import CST, PayerInput
from engine.prepare import Prepared, prepare
from engine.sealing import KeyRing
from engine.serde import input_to_dict
from engine.validation import validate
from storage import translog
from storage.bills import get_bill, reserve
from storage.db import apply_migrations, connect_pool, migration_files
from storage.lifecycle import BillFilter, back_entry, list_bills, load_original
from storage.offline import record_offline, waiting_offline
from storage.paper import receive_paper
from storage.personal import key_counts, reseal
from tests.factories import RING, bill
from tests.storage.conftest import OneConnection
from tests.storage.test_reserve import UNIT, setup, unit_catalog, work
from usecases.translog import verify_database

# The payer of this test: values that must not appear anywhere in the database.
ID_CARD = "11010519491231002X"
TEL = "13912345678"
EMAIL = "pii.secret@example.com"
CARD = "MC77889911"
NAME = "隐私测试患者"
SECRETS = (ID_CARD, ID_CARD.lower(), TEL, EMAIL, CARD, NAME)
PAYER = PayerInput(
    name=NAME, payer_type="1", id_card_no=ID_CARD, card_type="1", card_no=CARD, tel=TEL,
    email=EMAIL,
)  # fmt: skip
PAPER = "99000012"


def with_payer(seq: int, tag: str = "P") -> Prepared:
    src = replace(bill(seq), unit_code=UNIT, bus_no=f"PII-{tag}-{seq}", payer=PAYER)
    return prepare(validate(src, unit_catalog()))


async def payer_bills(db: asyncpg.Pool, ring: KeyRing = RING) -> list[int]:
    """Three bills of the payer, one red-flushed (a red bill and an event), one back
    entry and one offline record: every path that stores payer data."""
    await setup(db, numbers=20)
    out = await reserve(db, [(i, with_payer(i + 1)) for i in range(3)], ring=ring)
    ids = [work(out[i]).bill_id for i in range(3)]
    await db.execute(
        "UPDATE bills SET status = 'issued', unit_signature = 'u', fiscal_signature = 'f'"
        " WHERE id = ANY($1::bigint[])",
        ids,
    )
    first = with_payer(1)
    orig = await load_original(db, BillKey.serial(UNIT, first.bus_no), ring)
    assert orig is not None
    red = red_prepared(
        orig.state, orig.canonical, orig.request, bill_code=first.bill_code, bus_no="PII-RED-1",
        bus_time=datetime.now(UTC).astimezone(CST), place_code=first.place_code,
        operator="op-1", reason="wrong patient", void_paper=False, op="red_flush",
    )  # fmt: skip
    ids.append(work((await reserve(db, [(0, red)], ring=ring))[0]).bill_id)
    entered = await back_entry(
        db, with_payer(9, "BACK"), bill_code=first.bill_code, bill_no="0000000042",
        check_code="abc123", issued_at=datetime.now(UTC), operator="op-1", ring=ring,
    )  # fmt: skip
    ids.append(entered.bill_id)
    await receive_paper(
        db, unit_code=UNIT, place_code=first.place_code, paper_code=PAPER, start_no=1,
        end_no=5, operator="clerk",
    )  # fmt: skip
    request = b"BillRequest bytes naming " + ID_CARD.encode() + TEL.encode()
    await record_offline(
        db, unit_code=UNIT, bus_no="PII-OFF-1", place_code=first.place_code, paper_code=PAPER,
        paper_no="0000000001", operator="clerk", request=request, ring=ring,
    )  # fmt: skip
    return ids


async def raw_dump(conn: asyncpg.Pool | asyncpg.Connection) -> str:
    """Every row of every table of the schema as text, as a dump would show it."""
    tables = [
        r["table_name"]
        for r in await conn.fetch(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
        )
    ]
    assert {"bills", "offline_bills", "bill_events", "outbox", "log_entries"} <= set(tables)
    parts = []
    for table in tables:
        rows = await conn.fetch(f'SELECT t::text AS row FROM "{table}" t')
        parts += [f"{table}: {r['row']}" for r in rows]
    return "\n".join(parts)


def assert_no_secret(text: str) -> None:
    # bytea shows as hex in a text cast: look for the hex of each value too.
    for secret in SECRETS:
        assert secret not in text, secret
        assert secret.encode().hex() not in text, secret


async def test_a_raw_dump_of_every_table_shows_no_payer_data(db: asyncpg.Pool) -> None:
    ids = await payer_bills(db)
    text = await raw_dump(db)
    assert "PII-P-1" in text  # the rows are there ...
    assert_no_secret(text)  # ... the payer is not
    # Read through storage, the payer is all there, and the red bill carries it too.
    for bill_id in ids:
        key = BillKey.serial(
            UNIT, str(await db.fetchval("SELECT bus_no FROM bills WHERE id = $1", bill_id))
        )
        got = await get_bill(db, key, RING)
        assert got is not None and got.source is not None
        assert (got.source.payer.id_card_no, got.source.payer.tel) == (ID_CARD, TEL)
        assert got.source.payer.email == EMAIL
        assert ID_CARD.encode() in got.canonical  # the canonical bytes, as signed
    [(_, raw)] = await waiting_offline(db, 10, RING)
    assert ID_CARD.encode() in raw


async def test_search_by_id_card_finds_the_payers_bills(db: asyncpg.Pool) -> None:
    ids = await payer_bills(db)
    place = with_payer(1).place_code

    async def found(id_card: str = "", tel: str = "", card: str = "") -> list[int]:
        where = BillFilter(UNIT, place, payer_id_card_no=id_card, payer_tel=tel, payer_card_no=card)
        bills, _ = await list_bills(db, where, RING)
        return [b.bill_id for b in bills]

    assert sorted(await found(id_card=ID_CARD)) == sorted(ids)
    # Written the way people write it: lower-case x, spaces.
    assert sorted(await found(id_card="110105 19491231 002x")) == sorted(ids)
    assert sorted(await found(tel=TEL)) == sorted(ids)
    assert sorted(await found(card=CARD)) == sorted(ids)
    assert await found(id_card="110105194912310038") == []
    # The search uses the keyed digest: another index key finds nothing.
    other = KeyRing(RING.keys, RING.active, os.urandom(32))
    bills, _ = await list_bills(
        db, BillFilter(unit_code=UNIT, place_code=place, payer_id_card_no=ID_CARD), other
    )
    assert bills == []
    # A listing opens the request (the payer) but not the canonical bytes.
    bills, _ = await list_bills(
        db, BillFilter(unit_code=UNIT, place_code=place, payer_id_card_no=ID_CARD), RING
    )
    assert all(b.canonical == b"" and b.source and b.source.payer.tel == TEL for b in bills)
    plan = "\n".join(
        r[0]
        for r in await db.fetch(
            "EXPLAIN SELECT id FROM bills WHERE unit_code = $1 AND payer_id_card_hash = $2",
            UNIT,
            RING.index(ID_CARD, "id_card"),
        )
    )
    assert "bills_payer_id_hash" in plan or "Seq Scan" in plan  # tiny tables may scan


async def test_a_sealed_value_moved_to_another_row_does_not_open(db: asyncpg.Pool) -> None:
    ids = await payer_bills(db)
    await db.execute(
        "UPDATE bills SET request_sealed = (SELECT request_sealed FROM bills WHERE id = $2)"
        " WHERE id = $1",
        ids[0],
        ids[1],
    )
    with pytest.raises(DataLoss):
        await get_bill(db, BillKey.serial(UNIT, "PII-P-1"), RING)
    assert await get_bill(db, BillKey.serial(UNIT, "PII-P-3"), RING) is not None


async def test_rotation_old_rows_open_new_rows_use_the_new_key_reseal_moves_them(
    db: asyncpg.Pool,
) -> None:
    one = KeyRing.generate()
    await payer_bills(db, one)
    assert (await key_counts(db))["bills"] == {1: 5} or 1 in (await key_counts(db))["bills"]
    two = one.rotated()
    # Old rows open under the rotated ring ...
    old = await get_bill(db, BillKey.serial(UNIT, "PII-P-2"), two)
    assert old is not None and old.source is not None and old.source.payer.tel == TEL
    # ... new rows are sealed with key 2 ...
    out = await reserve(db, [(0, with_payer(7))], ring=two)
    new_id = work(out[0]).bill_id
    assert bytes(await db.fetchval("SELECT request_sealed FROM bills WHERE id = $1", new_id))[
        1:3
    ] == (2).to_bytes(2, "big")
    with pytest.raises(DataLoss, match="key 2"):
        await get_bill(db, BillKey.serial(UNIT, "PII-P-7"), one)
    # ... and the re-seal moves every old one, after which the old key opens nothing.
    counts = await key_counts(db)
    mine = await db.fetchval("SELECT count(*) FROM bills WHERE unit_code = $1", UNIT)
    report = await reseal(db, two, batch=2)
    assert report.rekeyed >= mine - 1 and report.offline_rekeyed >= 1
    after = await key_counts(db)
    assert set(after["bills"]) == {2} and set(after["offline_bills"]) == {2}, (counts, after)
    for bus_no in ("PII-P-1", "PII-P-2", "PII-RED-1", "PII-BACK-9", "PII-P-7"):
        got = await get_bill(db, BillKey.serial(UNIT, bus_no), two)
        assert got is not None and got.source is not None and got.source.payer.id_card_no == ID_CARD
    with pytest.raises(DataLoss):
        await get_bill(
            db, BillKey.serial(UNIT, "PII-P-1"), KeyRing({1: one.keys[1]}, 1, one.index_key)
        )
    # The index key did not change: search still finds them.
    bills, _ = await list_bills(
        db,
        BillFilter(unit_code=UNIT, place_code=with_payer(1).place_code, payer_id_card_no=ID_CARD),
        two,
    )
    assert len(bills) == 6
    assert_no_secret(await raw_dump(db))


# -- a database of its own: plaintext from before migration 0010, and pg_dump -----


def _pg_dump() -> Path:
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"


def _url_for(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest_asyncio.fixture
async def own_database(database_url: str) -> AsyncIterator[str]:
    """A fresh database on the test server (pg_dump sees only committed rows)."""
    name = f"pii_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield _url_for(database_url, name)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def _migrate_before_0010(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for version, name, sql in migration_files():
        if version >= 10:
            break
        await conn.execute(sql)
        await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2)", version, name)


async def test_a_database_from_before_0010_is_sealed_and_pg_dump_shows_no_payer(
    own_database: str,
) -> None:
    conn = await asyncpg.connect(own_database)
    try:
        await _migrate_before_0010(conn)
        # Rows as the code before migration 0010 wrote them: plaintext everywhere.
        await conn.execute(
            "INSERT INTO units VALUES ('OLD', 'old unit');"
            " INSERT INTO issuing_points VALUES ('OLD', '001', 'window', true);"
            " INSERT INTO segments (id, unit_code, bill_code, place_code, start_no, end_no,"
            "  next_no, grant_id) VALUES (1, 'OLD', '44060119', '001', 1, 10, 3, 'G');"
        )
        request = json.dumps(
            input_to_dict(replace(bill(1), unit_code="OLD", bus_no="OLD-1", payer=PAYER)),
            ensure_ascii=False,
        )
        canonical = ('{"payer":{"id_card_no":"' + ID_CARD + '","tel":"' + TEL + '"}}').encode()
        await conn.execute(
            "INSERT INTO bills (id, unit_code, bus_no, bus_type, bill_kind, place_code,"
            " bill_code, bill_no, check_code, segment_id, status, total_fen, payer_name,"
            " payer_id_card_no, payer_card_no, payer_tel, cashier, bus_time, issued_at,"
            " request, canonical, canonical_version, unit_signature, fiscal_signature)"
            " VALUES (1, 'OLD', 'OLD-1', '02', 'outpatient', '001', '44060119', '0000000001',"
            " 'abc', 1, 'issued', 100, $1, $2, $3, $4, 'c', now(), now(), $5::jsonb, $6,"
            " 'ebill-canonical/1', 'u', 'f')",
            NAME, ID_CARD, CARD, TEL, request, canonical,
        )  # fmt: skip
        await conn.execute("SELECT setval('bills_id_seq', 1)")
        await conn.execute(
            "INSERT INTO offline_bills (unit_code, bus_no, place_code, paper_code, paper_no,"
            " operator, request) VALUES ('OLD', 'OLD-OFF', '001', '99000012', '0000000001',"
            " 'clerk', $1)",
            ID_CARD.encode(),
        )
        with pytest.raises(AssertionError):
            assert_no_secret(await raw_dump(conn))
        # The log's trigger copied the offline row, plaintext included; sequenced.
        assert await conn.fetchval("SELECT count(*) FROM log_entries") == 1
        assert await translog.sequence(cast(asyncpg.Pool, OneConnection(conn))) is not None
        assert await apply_migrations(conn) != []
    finally:
        await conn.close()
    pool = await connect_pool(own_database, size=2, migrate=True)
    try:
        # A new row may not be written in plaintext any more, by any code.
        with pytest.raises(asyncpg.CheckViolationError):
            await pool.execute("UPDATE bills SET check_code = 'xyz' WHERE id = 1")
        report = await reseal(pool, RING)
        assert (report.plain_sealed, report.offline_plain_sealed) == (1, 1)
        assert await pool.fetchval(
            "SELECT bool_and(convalidated) FROM pg_constraint"
            " WHERE conname IN ('bills_sealed', 'offline_bills_sealed')"
        )
        got = await get_bill(pool, BillKey.serial("OLD", "OLD-1"), RING)
        assert got is not None and got.canonical == canonical
        assert got.source is not None and got.source.payer.id_card_no == ID_CARD
        bills, _ = await list_bills(
            pool, BillFilter(unit_code="OLD", place_code="001", payer_id_card_no=ID_CARD), RING
        )
        assert [b.bill_id for b in bills] == [1]
        assert (await waiting_offline(pool, 5, RING))[0][1] == ID_CARD.encode()
        # Issue new bills into it too, then dump the whole database.
        async with pool.acquire() as conn2:
            assert_no_secret(await raw_dump(conn2))
        # Running it again finds nothing to do.
        assert await reseal(pool, RING) == type(report)()
        # The log entry lost its plaintext content, not its digest: the log verifies.
        await translog.sequence(pool)
        async with pool.acquire() as conn3:
            assert (await verify_database(conn3, None, RING)).ok
    finally:
        await pool.close()
    dump = subprocess.run(
        [str(_pg_dump()), "--data-only", "--dbname", own_database],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "OLD-1" in dump
    assert_no_secret(dump)
