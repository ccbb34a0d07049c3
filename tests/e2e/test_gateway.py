"""The vendor gateway end to end, driven like a HIS drives it (tests/his_client.py):
retries give the same bill and the same red bill, concurrent retries too, and
every envelope refusal answers its vendor code with nothing written: no bill,
no nonce, no log leaf."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg
import pytest
from google.protobuf import json_format

from clients.credentials import AppCredentials
from ops.stack import Stack, http_ssl_context
from protos.ebill.v1 import identity_pb2, identity_pb2_grpc
from tests.his_client import HisClient, sign
from usecases import demo
from wire.bills import input_to_pb

CST = timezone(timedelta(hours=8))
_n = iter(range(1, 10**6))


def now17() -> str:
    t = datetime.now(CST)
    return t.strftime("%Y%m%d%H%M%S") + f"{t.microsecond // 1000:03d}"


def outpatient(bus_no: str, place: str = "001", amount: str = "25.00") -> dict[str, Any]:
    return {
        "busNo": bus_no, "busType": "02", "payer": "张伟", "busDateTime": now17(),
        "placeCode": place, "payee": "收费员", "author": "收费员", "totalAmt": float(amount),
        "payerType": "1", "cardType": "3101", "cardNo": "C1", "sex": "男", "age": "30",
        "payChannelDetail": [{"payChannelCode": "02", "payChannelValue": float(amount)}],
        "chargeDetail": [{"sortNo": 1, "chargeCode": "A03", "chargeName": "检查费",
                          "std": float(amount), "number": 1, "amt": float(amount)}],
    }  # fmt: skip


def serial(tag: str) -> str:
    return f"GWE{next(_n):04d}{tag}{int(datetime.now().timestamp()) % 100000}"


def client(stack: Stack, appid: str, key: str) -> HisClient:
    tls = stack.tls()
    return HisClient(stack.http_url, appid, key, verify=http_ssl_context(tls) if tls else True)


@pytest.fixture(scope="module")
def his(stack: Stack) -> Iterator[HisClient]:
    c = client(stack, stack.demo.app_id, stack.demo.app_secret.hex())
    yield c
    c.close()


async def written(pool: asyncpg.Pool) -> tuple[int, int, int]:
    """What a call may write: bills, claimed nonces, transparency-log entries."""
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM bills) AS b, (SELECT count(*) FROM request_nonces) AS n,"
        " (SELECT count(*) FROM log_entries) AS l"
    )
    return int(row["b"]), int(row["n"]), int(row["l"])


def test_retried_issue_and_red_flush_give_the_same_bills(his: HisClient) -> None:
    bill = outpatient(serial("R"))
    first = his.call("invoiceEBillOutpatient", bill)
    assert first.ok and first.signed_ok, first.message
    again = his.call("invoiceEBillOutpatient", bill)
    assert (again.message["billBatchCode"], again.message["billNo"]) == (
        first.message["billBatchCode"],
        first.message["billNo"],
    )
    red_req = {
        "billBatchCode": first.message["billBatchCode"], "billNo": first.message["billNo"],
        "reason": "退费", "operator": "收费员", "busDateTime": now17(), "placeCode": "001",
    }  # fmt: skip
    red = his.call("writeOffEBill", red_req)
    assert red.ok, red.message
    # The HIS lost the answer and sends the red-flush again, later, with a new time.
    red_again = his.call("writeOffEBill", {**red_req, "busDateTime": now17()})
    assert red_again.message["eScarletBillNo"] == red.message["eScarletBillNo"]
    status = his.call(
        "getEBillStatesByBillInfo", {k: red_req[k] for k in ("billBatchCode", "billNo")}
    )
    assert status.message["isScarlet"] == "1"
    assert status.message["scarletBillNo"] == red.message["eScarletBillNo"]


def test_concurrent_retries_of_one_serial_give_one_bill(his: HisClient) -> None:
    bill = outpatient(serial("C"))
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: his.call("invoiceEBillOutpatient", bill), range(8)))
    assert all(r.ok for r in replies), [r.message for r in replies if not r.ok]
    assert len({r.message["billNo"] for r in replies}) == 1


async def test_refusals_write_nothing(stack: Stack, his: HisClient, pool: asyncpg.Pool) -> None:
    bill = outpatient(serial("X"))
    good = his.envelope(bill)
    cases: list[tuple[str, str, bytes]] = [
        ("bad sign", "E1003", json.dumps({**good, "sign": "0" * 32}).encode()),
        ("unknown appid", "E1002", json.dumps({**good, "appid": "nobody"}).encode()),
        ("malformed JSON", "E1001", b'{"appid": "demo-his", "data": '),
        ("data not base64", "E1001", json.dumps(
            {**good, "data": "@@@", "sign": sign(his.appid, "@@@", good["noise"], his.key)}
        ).encode()),
    ]  # fmt: skip
    before = await written(pool)
    for what, code, body in cases:
        reply = his.post("invoiceEBillOutpatient", body)
        assert reply.result == code, (what, reply.message)
    assert await written(pool) == before

    # A business refusal writes no bill either (the noise of a good envelope is spent).
    bad = his.call("invoiceEBillOutpatient", {**bill, "totalAmt": 25.001})
    assert bad.result == "E2001" and "totalAmt" in bad.message
    after = await written(pool)
    assert (after[0], after[2]) == (before[0], before[2])

    # The same envelope twice: the second is a replay, refused before anything runs.
    first = his.post("invoiceEBillOutpatient", good)
    assert first.ok, first.message
    mid = await written(pool)
    replay = his.post("invoiceEBillOutpatient", good)
    assert replay.result == "E1004"
    assert await written(pool) == mid


@pytest.fixture(scope="module")
def kiosk(stack: Stack) -> Iterator[HisClient]:
    """An app of issuing point 001 that may only issue outpatient bills and read them."""

    async def register() -> bytes:
        admin = await stack.login("admin")
        async with stack.channel(creds=admin) as ch:
            resp = await identity_pb2_grpc.IdentityServiceStub(ch).RegisterApp(
                identity_pb2.RegisterAppRequest(
                    app_id="kiosk-001",
                    unit_code=demo.UNIT_CODE,
                    places=["001"],
                    methods=["vendor:invoiceEBillOutpatient", "vendor:getEBillStatesByBillInfo"],
                    permissions=["bill.issue", "bill.read"],
                    description="self-service kiosk at window 001",
                )
            )
        return bytes(resp.secret)

    secret = asyncio.run(register())
    c = client(stack, "kiosk-001", secret.hex())
    yield c
    c.close()


def test_an_app_is_held_to_its_methods_and_points(his: HisClient, kiosk: HisClient) -> None:
    assert kiosk.call("invoiceEBillOutpatient", outpatient(serial("K"))).ok
    elsewhere = kiosk.call("invoiceEBillOutpatient", outpatient(serial("K"), place="002"))
    assert elsewhere.result == "E2004", elsewhere.message
    other = his.call("invoiceEBillOutpatient", outpatient(serial("O"), place="002"))
    assert other.ok
    seen = kiosk.call(
        "getEBillStatesByBillInfo",
        {"billBatchCode": other.message["billBatchCode"], "billNo": other.message["billNo"]},
    )
    assert seen.result == "E2004"  # another point's bill
    refused = kiosk.call(
        "writeOffEBill",
        {"billBatchCode": "44060119", "billNo": "0000000001", "reason": "x", "operator": "x",
         "busDateTime": now17(), "placeCode": "001"},
    )  # fmt: skip
    assert refused.result == "E1006"
    # Its own answers are signed with its own key.
    assert refused.signed_ok


def test_the_service_prefix_of_the_vendor_url_is_accepted(his: HisClient) -> None:
    env = his.envelope({"testValue": "svc"})
    raw = his.http.post(f"{his.base_url}/medical-einvoice/api/medical/testServerConnect", json=env)
    assert his.read(raw.json()).ok


async def test_rest_mapping_is_authenticated_and_documented(stack: Stack) -> None:
    creds = AppCredentials(stack.demo.app_id, stack.demo.app_secret)
    bill = demo.demo_bill(next(_n), prefix=f"RS{int(datetime.now().timestamp()) % 10**6}")
    body = json.dumps(
        {"bill": json_format.MessageToDict(input_to_pb(bill), preserving_proto_field_name=True)}
    ).encode()
    method = "/ebill.v1.IssuanceService/IssueBill"
    async with stack.http_client() as http:
        doc = (await http.get("/openapi.json")).json()
        assert "/v1/bills" in doc["paths"] and "/v1/IssuanceService/IssueBill" in doc["paths"]
        assert "ebill.v1.BillRequest" in doc["components"]["schemas"]
        anonymous = await http.post("/v1/bills", content=body)
        assert anonymous.status_code == 401, anonymous.text
        headers = dict(creds.metadata(method, body))
        made = await http.post("/v1/bills", content=body, headers=headers)
        assert made.status_code == 200, made.text
        issued = made.json()["bill"]
        assert issued["bus_no"] == bill.bus_no and issued["status"] == "BILL_STATUS_ISSUED"
        # The same serial again: the same bill (replayed).
        again = await http.post(
            "/v1/bills", content=body, headers=dict(creds.metadata(method, body))
        )
        assert again.json()["bill"]["bill_no"] == issued["bill_no"]
        path = f"/v1/bills/{issued['bill_code']}/{issued['bill_no']}/status"
        get = "/ebill.v1.IssuanceService/GetBillStatus"
        status = await http.get(path, headers=dict(creds.metadata(get, b"")))
        assert status.status_code == 200 and status.json()["bus_no"] == bill.bus_no
        wrong = json.loads(body)
        wrong["bill"]["bus_no"] += "W"
        wrong["bill"]["total_amount"] = "1.001"
        bad = json.dumps(wrong).encode()
        refused = await http.post(
            "/v1/bills", content=bad, headers=dict(creds.metadata(method, bad))
        )
        assert (
            refused.status_code == 400 and refused.json()["error"]["status"] == "INVALID_ARGUMENT"
        )


async def counts(pool: asyncpg.Pool, bus_no: str) -> tuple[int, int, int]:
    """Bills, the bill's delivery jobs, resends in the transparency log (the
    delivery worker writes leaves of its own as it sends: only resends count)."""
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM bills) AS b,"
        " (SELECT count(*) FROM delivery_jobs j JOIN bills b ON b.id = j.bill_id"
        "  WHERE b.bus_no = $1) AS d,"
        " (SELECT count(*) FROM log_entries WHERE op = 'delivery.resend') AS l",
        bus_no,
    )
    return int(row["b"]), int(row["d"]), int(row["l"])


async def test_notice_and_deposit_refusals_write_nothing(
    stack: Stack, his: HisClient, pool: asyncpg.Pool
) -> None:
    bus_no = serial("N")
    bill = {**outpatient(bus_no, place="002"), "tel": "13800138001"}
    issued = his.call("invoiceEBillOutpatient", bill)
    assert issued.ok, issued.message
    key = {"billBatchCode": issued.message["billBatchCode"], "billNo": issued.message["billNo"]}
    before = await counts(pool, bus_no)
    for notice, field in (
        ({"noticeType": "1201", "noticeValue": "13800138002"}, "noticeValue"),
        ({"noticeType": "1201", "noticeValue": "not a phone"}, "noticeValue"),
        ({"noticeType": "1202", "noticeValue": "someone@example.com"}, "noticeValue"),
        ({"noticeType": "9"}, "noticeType"),
    ):
        reply = his.call("sendBillNotice", {**key, "noticeList": [notice]})
        assert reply.result == "E2001" and f"noticeList[0].{field}" in reply.message, reply.message
    voucher = his.call(
        "writeOffPayMentVoucher",
        {"busType": "07", "voucherBatchCode": key["billBatchCode"], "voucherNo": key["billNo"],
         "reason": "x", "operator": "x", "busDateTime": now17(), "placeCode": "002", "amt": 0},
    )  # fmt: skip
    assert voucher.result == "E2001" and "amt" in voucher.message, voucher.message
    assert await counts(pool, bus_no) == before
    sent = his.call(
        "sendBillNotice",
        {**key, "noticeList": [{"noticeType": "1201", "noticeValue": "13800138001"}]},
    )
    assert sent.ok, sent.message
    after = await counts(pool, bus_no)
    # The bill queued on SMS (its job made now if it had none), one log leaf for it.
    assert after[0] == before[0] and after[1] >= max(before[1], 1)
    assert after[2] == before[2] + 1


@pytest.fixture(scope="module")
def lister(stack: Stack) -> Iterator[HisClient]:
    """An app of issuing point 001 that may list bills, without personal data."""

    async def register() -> bytes:
        admin = await stack.login("admin")
        async with stack.channel(creds=admin) as ch:
            resp = await identity_pb2_grpc.IdentityServiceStub(ch).RegisterApp(
                identity_pb2.RegisterAppRequest(
                    app_id="lister-001",
                    unit_code=demo.UNIT_CODE,
                    places=["001"],
                    methods=["/ebill.v1.LifecycleService/ListBills"],
                    permissions=["bill.read"],
                    description="a WeChat account's bill list at window 001",
                )
            )
        return bytes(resp.secret)

    secret = asyncio.run(register())
    c = client(stack, "lister-001", secret.hex())
    yield c
    c.close()


def test_listings_keep_an_app_to_its_points_and_mask_for_it(
    his: HisClient, lister: HisClient
) -> None:
    start = now17()
    card = f"W{serial('L')}"
    mine = his.call(
        "invoiceEBillOutpatient",
        {**outpatient(serial("L")), "cardNo": card, "idCardNo": "110101199003071233"},
    )
    other = his.call(
        "invoiceEBillOutpatient", {**outpatient(serial("L"), place="002"), "cardNo": card}
    )
    assert mine.ok and other.ok
    window = {"busBgnDate": start, "busEndDate": now17(), "pageNo": 1, "pageSize": 50}
    elsewhere = lister.call("getBillByBusDate", {**window, "placeCode": "002"})
    assert elsewhere.result == "E2004", elsewhere.message
    own = lister.call("getBillByBusDate", window)  # its one point, without naming it
    assert own.ok, own.message
    assert {b["placeCode"] for b in own.message["billList"]} == {"001"}
    assert mine.message["billNo"] in {b["billNo"] for b in own.message["billList"]}
    listed = lister.call("getEBillUnPrintList", {**window, "cardType": "3101", "cardNo": card})
    assert listed.ok, listed.message
    (row,) = listed.message["billList"]  # the point-002 bill is not its to see
    assert row["billNo"] == mine.message["billNo"] and row["idCardNo"] != "110101199003071233"
    assert lister.call("sendBillNotice", {"billBatchCode": "x", "billNo": "y"}).result == "E1006"
