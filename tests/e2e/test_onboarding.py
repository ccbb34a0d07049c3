"""Onboarding a real (non-demo) hospital on the running stack: `ebill init` from
the sample base-data file, its signing certificate from the CA registered with
the platform, stock granted, bills issued with HIS codes through the mapping;
a sync from the platform that adds, renames and withdraws items; certificate
rotation with bills before and after both verifying (gmssl)."""

from __future__ import annotations

import base64
import itertools
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
import pytest
import pytest_asyncio

from clients.credentials import AppCredentials, SessionCredentials
from clients.fiscal import FiscalClient
from engine.identity import totp
from engine.model import CST
from engine.x509 import parse
from ops.stack import Stack
from protos.ebill.v1 import (
    bill_pb2,
    catalog_pb2,
    catalog_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    issuance_pb2,
    issuance_pb2_grpc,
    lifecycle_pb2,
    stock_pb2,
)
from tests.gm_reference import gm_verify
from usecases.bootstrap import grant_stock

pytestmark = pytest.mark.slow

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "hospital" / "hospital.yaml"
UNIT = "350203001"
OUTPATIENT = "35060126"
OFFICE = lifecycle_pb2.Operator(unit_code=UNIT, operator="信息科王工")
# A signed-in person acts as himself: the operator's name is filled in.
KEYS_OFFICE = lifecycle_pb2.Operator(unit_code=UNIT)
_seq = itertools.count(1)
NAMES = {"0502": "手术费", "0901": "体检费"}


@dataclass
class Hospital:
    catalog: catalog_pb2_grpc.CatalogServiceStub
    issuance: issuance_pb2_grpc.IssuanceServiceStub
    platform: FiscalClient
    fiscal: FiscalClient
    first_cert: catalog_pb2.UnitCertificate
    fiscal_key: bytes
    keys: catalog_pb2_grpc.CatalogServiceStub  # the administrator's session: signing keys


def _stamp(t: datetime) -> str:
    return t.strftime("%Y%m%d%H%M%S") + f"{t.microsecond // 1000:03d}"


def bill(
    lines: list[tuple[str, str, str]], *, when: datetime | None = None
) -> bill_pb2.BillRequest:
    """An outpatient bill whose lines are (his_code, charge_code, amount)."""
    total = sum(int(a.replace(".", "")) for _, _, a in lines)
    amount = f"{total // 100}.{total % 100:02d}"
    return bill_pb2.BillRequest(
        unit_code=UNIT,
        bus_no=f"HOSP{os.getpid()}N{next(_seq):05d}",
        bus_type="02",
        payer=bill_pb2.Payer(name="郑小梅", payer_type="1", tel="13906001234"),
        bus_time=_stamp(when or datetime.now(CST)),
        place_code="001",
        cashier="SF001",
        author="陈丽华",
        total_amount=amount,
        charge_items=[
            bill_pb2.ChargeItem(
                sort_no=i,
                his_code=h,
                charge_code=c,
                # Sent with a fiscal code, a line names its item; with an HIS code
                # the engine takes the fiscal name.
                charge_name=NAMES.get(c, ""),
                unit="项",
                std=a,
                number="1",
                amt=a,
            )
            for i, (h, c, a) in enumerate(lines, start=1)
        ],
        pay_channels=[bill_pb2.PayChannel(pay_channel_code="05", amount=amount)],
    )


async def issue(h: Hospital, *bills: bill_pb2.BillRequest) -> list[issuance_pb2.ItemResult]:
    resp = await h.issuance.IssueBatch(issuance_pb2.IssueBatchRequest(bills=list(bills)))
    return list(resp.results)


def assert_verifies(b: bill_pb2.IssuedBill, unit_key: bytes, fiscal_key: bytes) -> None:
    assert gm_verify(unit_key, b.canonical, b.unit_signature), f"unit signature of {b.bill_no}"
    assert gm_verify(fiscal_key, b.canonical + b.unit_signature, b.fiscal_signature)


@pytest_asyncio.fixture(scope="module")
async def hospital(stack: Stack, pool: asyncpg.Pool) -> AsyncIterator[Hospital]:
    # 1. The base data, by the operator's command, into the stack's database.
    env = {**os.environ, **stack.env(), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "ebill.cli", "init", str(SAMPLE), "--operator", "信息科王工"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "49 created" in done.stdout
    # 2. Who may act for it: the hospital's HIS as an app, and its administrator
    # (password and TOTP) for the signing keys, registered offline as a new
    # hospital's IT staff would.
    app_file = stack.config.data_dir / f"app-{UNIT}.json"

    def identity(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "ebill.cli", "identity", *args],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    perms = ("bill.issue", "bill.read", "catalog.read", "catalog.manage")
    identity("register-app", f"his-{UNIT}", "--unit", UNIT, "--out", str(app_file),
             *[a for p in perms for a in ("--permission", p)])  # fmt: skip
    app = json.loads(app_file.read_text())
    password = "Hosp-admin-2026-pw"
    printed = identity("create-admin", "--username", f"it-{UNIT}", "--unit", UNIT,
                       "--password", password)  # fmt: skip
    b32 = printed.split("secret=")[1].split("&")[0]
    seed = base64.b32decode(b32 + "=" * (-len(b32) % 8))
    async with stack.channel(creds=False) as anon:
        login = await identity_pb2_grpc.IdentityServiceStub(anon).Login(
            identity_pb2.LoginRequest(
                username=f"it-{UNIT}", password=password, totp=totp(seed, time.time())
            )
        )
    tls = stack.tls("engine")
    async with (
        stack.channel(creds=AppCredentials(app["app_id"], bytes.fromhex(app["secret_hex"]))) as ch,
        stack.channel(creds=SessionCredentials(login.token)) as admin_ch,
        FiscalClient(stack.config.fiscal_addr, tls=tls) as fiscal,
    ):
        catalog = catalog_pb2_grpc.CatalogServiceStub(ch)
        keys = catalog_pb2_grpc.CatalogServiceStub(admin_ch)
        # 3. Its signing certificate: the CA certifies a key of the signing
        # server, the platform registers it, new bills are signed with it.
        cert = await keys.IssueCertificate(
            catalog_pb2.IssueCertificateRequest(
                operator=KEYS_OFFICE, key_id=f"h{UNIT}-a", valid_days=730
            )
        )
        assert cert.active and cert.registered
        # 4. Numbers for the outpatient window.
        await grant_stock(
            pool, fiscal, unit_code=UNIT, place_code="001", bill_code=OUTPATIENT, count=500
        )
        # 5. The first sync adopts the platform's catalogue (the sample's items).
        await catalog.SyncCatalog(stock_pb2.OperatorOnly(operator=OFFICE))
        yield Hospital(
            catalog,
            issuance_pb2_grpc.IssuanceServiceStub(ch),
            # The finance bureau's side (publishing base data) and the engine's
            # side speak to the same platform: one client.
            fiscal,
            fiscal,
            cert,
            (await fiscal.public_key()).point,
            keys,
        )


async def test_bills_are_issued_through_the_mapping(hospital: Hospital) -> None:
    h = hospital
    ok, unknown, before_mapping = await issue(
        h,
        bill([("XY.0001", "", "37.00"), ("HY-XCG", "", "25.00"), ("GH-PT", "", "8.00")]),
        bill([("XY.0001", "", "37.00"), ("NO.SUCH", "", "5.00")]),
        bill([("XY.0001", "", "37.00")], when=datetime(2023, 6, 1, 9, tzinfo=CST)),
    )
    b = ok.bill
    assert b.status == bill_pb2.BILL_STATUS_ISSUED and b.bill_code == OUTPATIENT
    # GH-PT maps to 一般诊疗费 (0303) from 2026-01-01, to 挂号费 (0302) before.
    for code, name in (("0101", "西药费"), ("0402", "化验费"), ("0303", "一般诊疗费")):
        assert f'"charge_code":"{code}","charge_name":"{name}"'.encode() in b.canonical
    assert_verifies(b, parse(h.first_cert.der).public_key, h.fiscal_key)
    assert unknown.error.code == "INVALID_ARGUMENT"
    assert unknown.error.field.endswith("charge_items[1].his_code")
    assert before_mapping.error.field.endswith("charge_items[0].his_code")
    assert "not mapped on 2023-06-01" in before_mapping.error.message


async def test_a_sync_adds_changes_and_withdraws_items(
    hospital: Hospital, pool: asyncpg.Pool
) -> None:
    h = hospital
    today = datetime.now(CST)
    # A bill with 手术费 (0502) issued before the platform withdraws it.
    [early] = await issue(h, bill([("", "0502", "1200.00")]))
    assert early.bill.status == bill_pb2.BILL_STATUS_ISSUED
    published = await h.platform.publish_base_data(
        UNIT,
        items=[("0901", "体检费"), ("0503", "护理费（含特级护理）")],
        withdraw=["0502"],
        withdraw_on=today.date(),
    )
    got = await h.catalog.SyncCatalog(stock_pb2.OperatorOnly(operator=OFFICE))
    assert got.to_version == published.version > got.from_version
    r = got.report
    assert (r.created, r.updated, r.withdrawn) == (1, 1, 1), r
    changed = {(c.kind, c.key, c.op) for c in r.changes}
    assert changed == {
        ("charge_item", "0901", "create"),
        ("charge_item", "0503", "update"),
        ("charge_item", "0502", "withdraw"),
    }
    again = await h.catalog.SyncCatalog(stock_pb2.OperatorOnly(operator=OFFICE))
    assert again.report.created + again.report.updated + again.report.withdrawn == 0
    # From its end date 0502 is refused; a bill dated the day before is still
    # accepted (and countersigned); the bill issued before stays issued.
    refused, yesterday, new_item = await issue(
        h,
        bill([("", "0502", "800.00")]),
        bill([("", "0502", "800.00")], when=today - timedelta(days=1)),
        bill([("", "0901", "120.00")]),
    )
    assert refused.error.field.endswith("charge_items[0].charge_code")
    assert "withdrawn from" in refused.error.message
    assert yesterday.bill.status == bill_pb2.BILL_STATUS_ISSUED
    assert new_item.bill.status == bill_pb2.BILL_STATUS_ISSUED
    status = await pool.fetchval(
        "SELECT status FROM bills WHERE bill_code = $1 AND bill_no = $2",
        early.bill.bill_code,
        early.bill.bill_no,
    )
    assert status == "issued"
    found = await h.fiscal.verify_bill(
        early.bill.bill_code, early.bill.bill_no, early.bill.check_code
    )
    assert found.found


async def test_certificate_rotation_keeps_bills_of_both_keys_verifiable(
    hospital: Hospital, stack: Stack
) -> None:
    h = hospital
    [before] = await issue(h, bill([("XY.0002", "", "23.00")]))
    second = await h.keys.IssueCertificate(
        catalog_pb2.IssueCertificateRequest(
            operator=KEYS_OFFICE, key_id=f"h{UNIT}-b", valid_days=730
        )
    )
    assert not second.active  # issued beside the first; activated on purpose
    await h.keys.ActivateCertificate(
        catalog_pb2.CertificateRef(operator=KEYS_OFFICE, serial=second.serial)
    )
    [after] = await issue(h, bill([("XY.0002", "", "23.00")]))
    old_key, new_key = parse(h.first_cert.der).public_key, parse(second.der).public_key
    assert_verifies(before.bill, old_key, h.fiscal_key)
    assert_verifies(after.bill, new_key, h.fiscal_key)
    assert not gm_verify(old_key, after.bill.canonical, after.bill.unit_signature)
    for b in (before.bill, after.bill):
        assert (await h.fiscal.verify_bill(b.bill_code, b.bill_no, b.check_code)).found
    listed = await h.catalog.ListCertificates(stock_pb2.OperatorOnly(operator=OFFICE))
    assert {(c.serial, c.active) for c in listed.certificates} == {
        (h.first_cert.serial, False),
        (second.serial, True),
    }
    assert all(700 <= c.days_left <= 730 for c in listed.certificates)
    metrics = (
        urllib.request.urlopen(f"http://127.0.0.1:{stack.config.metrics_port}/metrics", timeout=5)
        .read()
        .decode()
    )
    assert f'ebill_certificate_days_left{{unit="{UNIT}"}}' in metrics


async def test_a_foreign_certificate_is_refused(hospital: Hospital) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as got:
        await hospital.keys.ImportCertificate(
            catalog_pb2.ImportCertificateRequest(
                operator=KEYS_OFFICE, key_id=f"h{UNIT}-c", certificate=hospital.first_cert.der
            )
        )
    assert got.value.code() == grpc.StatusCode.FAILED_PRECONDITION
