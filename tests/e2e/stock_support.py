"""Helpers the stock end-to-end modules share (test_stock_*.py).

The bill counter lives here, once per session, so that serials stay unique
across the modules: they share one stack and one database.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from typing import Any

from protos.ebill.v1 import bill_pb2, lifecycle_pb2, stock_pb2, stock_pb2_grpc
from usecases import demo
from wire.bills import input_to_pb

__all__ = [
    "CODE",
    "CST",
    "available",
    "balanced",
    "bill_at",
    "office",
    "office_stock",
    "point",
    "today",
]

CODE = "44060119"
_seq = itertools.count(1)
CST = timezone(timedelta(hours=8))


def office(who: str = "manager-a") -> lifecycle_pb2.Operator:
    return lifecycle_pb2.Operator(unit_code=demo.UNIT_CODE, operator=who)


def point(place: str, who: str = "cashier-x") -> lifecycle_pb2.Operator:
    return lifecycle_pb2.Operator(unit_code=demo.UNIT_CODE, place_code=place, operator=who)


def today() -> str:
    return datetime.now(CST).strftime("%Y%m%d")


async def balanced(stock: stock_pb2_grpc.StockServiceStub) -> dict[str, Any]:
    """Assert the stock identity for every bill code; returns the lines by code."""
    ident = await stock.GetStockIdentity(stock_pb2.OperatorOnly(operator=office()))
    lines = {line.bill_code: line for line in ident.lines}
    for line in ident.lines:
        assert line.granted == line.issued + line.available + line.voided + line.returned, line
        assert line.balanced
    return lines


async def office_stock(stock: stock_pb2_grpc.StockServiceStub, count: int) -> stock_pb2.Range:
    """Numbers for the bill office, the way a unit gets them: apply, submit, sync, enable."""
    app = await stock.CreateGrantApplication(
        stock_pb2.GrantApplicationRequest(operator=office(), bill_code=CODE, count=count)
    )
    await stock.SubmitGrantApplication(stock_pb2.ByIdRequest(operator=office(), id=app.id))
    await stock.SyncGrantApplications(stock_pb2.OperatorOnly(operator=office()))
    enabled = await stock.EnableGrant(stock_pb2.ByIdRequest(operator=office(), id=app.id))
    assert enabled.status == "enabled"
    return stock_pb2.Range(bill_code=CODE, start_no=enabled.start_no, end_no=enabled.end_no)


def bill_at(place: str, bus_type: str = "02") -> bill_pb2.BillRequest:
    n = next(_seq)
    b = demo.demo_bill(n, prefix=f"SK{n:05d}", place_code=place, bus_type=bus_type)
    return input_to_pb(b)


async def available(stock: stock_pb2_grpc.StockServiceStub, place: str) -> int:
    resp = await stock.QueryStock(stock_pb2.StockQuery(operator=point(place)))
    return sum(s.remaining for s in resp.segments if s.bill_code == CODE and s.status == "enabled")
