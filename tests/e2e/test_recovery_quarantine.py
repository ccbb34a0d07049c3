"""One offline bill whose back-issue cannot be finished must not stop recovery of
every other bill (issue #11, item 1).

The bad record is the one issue #11 found: an offline paper bill on a sheet a
conversion also printed. Recording it is refused now, so the test writes the row
the way the engine wrote it before the fix (a database carried over from then).
Before the fix, the failed link stopped every recovery pass: the 300 pending
bills stayed pending for good.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from protos.ebill.v1 import issuance_pb2, issuance_pb2_grpc, lifecycle_pb2
from protos.ebill.v1 import lifecycle_pb2_grpc as lc_grpc
from storage.db import connect_pool
from storage.paper import receive_paper
from storage.personal import seal_offline
from tests.e2e.test_ops import scrape, value
from tests.resilience import His, check_invariants, new_bills, own_stack, public_keys

pytestmark = pytest.mark.slow

PAPER = "44061119"
PENDING_BILLS = 300
# After the platform is back, every other bill is countersigned within this.
BOUND_S = 60


def test_a_bad_offline_bill_is_quarantined_and_the_others_recover() -> None:
    with own_stack("quarantine") as stack:
        stack.start_engine()

        async def scenario() -> None:
            pool = await connect_pool(stack.database_url, migrate=False)
            keys = await public_keys(stack)
            (converted, good_offline, bad_offline) = new_bills(3, "QOF")
            unit, place = converted.unit_code, converted.place_code
            await receive_paper(
                pool, unit_code=unit, place_code=place, paper_code=PAPER,
                start_no=1, end_no=100, operator="收费员01",
            )  # fmt: skip
            his = His(stack.channel)
            async with stack.channel() as ch:
                stub = issuance_pb2_grpc.IssuanceServiceStub(ch)
                lifecycle = lc_grpc.LifecycleServiceStub(ch)
                await his.issue([converted], deadline=time.monotonic() + 60)
                conv = await lifecycle.ConvertToPaper(
                    lifecycle_pb2.PaperBillRequest(
                        operator=lifecycle_pb2.Operator(
                            unit_code=unit, place_code=place, operator="收费员01"
                        ),
                        bill=issuance_pb2.GetBillRequest(
                            by_bus=issuance_pb2.BusKey(unit_code=unit, bus_no=converted.bus_no)
                        ),
                    )
                )
                assert (conv.paper_code, conv.paper_no) == (PAPER, "0000000001")

                stack.stop_process("fiscal")
                for _ in range(PENDING_BILLS // 150):
                    await his.issue(new_bills(150, "QPD"), deadline=time.monotonic() + 90)
                # A good offline bill, on the next blank...
                await stub.RecordOfflineBill(
                    issuance_pb2.RecordOfflineBillRequest(
                        bill=good_offline, paper_code=PAPER, paper_no="0000000002",
                        operator="收费员01",
                    )
                )  # fmt: skip
                # ... and the bad one, on the converted bill's sheet (as recorded
                # before the fix).
                bad_id = await pool.fetchval(
                    "INSERT INTO offline_bills (unit_code, bus_no, place_code, paper_code,"
                    " paper_no, operator, request_sealed)"
                    " VALUES ($1, $2, $3, $4, $5, '收费员01', $6) RETURNING id",
                    unit, bad_offline.bus_no, place, PAPER, conv.paper_no,
                    seal_offline(
                        stack.data_keys(), unit, bad_offline.bus_no,
                        bad_offline.SerializeToString(),
                    ),
                )  # fmt: skip
                pending = "SELECT count(*) FROM bills WHERE status = 'pending_countersign'"
                assert await pool.fetchval(pending) == PENDING_BILLS

                stack.start_fiscal()
                back = time.monotonic()
                while await pool.fetchval("SELECT count(*) FROM outbox") > 0 or (
                    await pool.fetchval(
                        "SELECT count(*) FROM offline_bills WHERE bill_id IS NULL"
                        " AND quarantined_at IS NULL"
                    )
                ):
                    assert time.monotonic() - back < BOUND_S, (
                        f"{await pool.fetchval(pending)} bills still pending "
                        f"{BOUND_S} s after the platform came back"
                    )
                    await asyncio.sleep(0.5)

                backlog = await stub.GetBacklog(issuance_pb2.GetBacklogRequest())
                assert (backlog.reserved, backlog.pending_countersign) == (0, 0)
                assert backlog.quarantined == 1
                [q] = backlog.quarantine
                assert (q.offline_id, q.bus_no, q.paper_no) == (
                    bad_id,
                    bad_offline.bus_no,
                    "0000000001",
                )
                assert q.bill_id > 0 and q.reason
                text = scrape(stack)
                assert value(text, "ebill_recovery_quarantined_total", kind="offline") == 1

                # The good offline bill got its e-bill and its sheet; the converted
                # bill keeps its own.
                for b, no in ((good_offline, "0000000002"), (converted, "0000000001")):
                    got = await stub.GetBill(
                        issuance_pb2.GetBillRequest(
                            by_bus=issuance_pb2.BusKey(unit_code=unit, bus_no=b.bus_no)
                        )
                    )
                    assert (got.paper_code, got.paper_no) == (PAPER, no)
                    his.acked[b.bus_no] = got
            # Every bill (the quarantined one's e-bill too) countersigned once.
            assert (
                await check_invariants(pool, his.acked, keys, ring=stack.data_keys())
                == PENDING_BILLS + 3
            )
            await pool.close()

        asyncio.run(scenario())
