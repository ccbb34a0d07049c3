"""One vendor call as the method handlers see it: the app, its scope, the
engine's use cases, and the helpers every handler shares."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ebill.http.gateway.codes import GatewayError, Result
from ebill.http.gateway.fields import Reader
from ebill.http.services import RegisteredApp, Services
from engine.errors import NotFound
from engine.lifecycle import BillKey
from engine.model import IssuedBill
from engine.operator import Operator

__all__ = ["Call", "Handler", "Method"]

# A handler's answer: the business JSON of a success (a dict), or its text.
Answer = Mapping[str, Any] | str
Handler = Callable[["Call", Reader], Awaitable[Answer]]


@dataclass(frozen=True, slots=True)
class Method:
    """A vendor interface: its handler, the permission it needs (engine.identity
    Permission values), the gRPC method it stands for (an app whose methods list
    that gRPC name may call it), and its group in seed 004's 31 interfaces."""

    handler: Handler
    permission: str
    grpc: str
    group: str


@dataclass(frozen=True, slots=True)
class Call:
    app: RegisteredApp
    services: Services
    method: str
    # time.monotonic() by which the answer is due (uvicorn has no per-call deadline).
    deadline: float

    @property
    def unit_code(self) -> str:
        return self.app.unit_code

    def time_left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def place(self, r: Reader, name: str = "placeCode", *, required: bool = True) -> str:
        """The issuing point a request names, which must be one of the app's."""
        place = r.text(name, required=required, max_len=50)
        if place and self.app.places and place not in self.app.places:
            raise GatewayError(
                Result.OUT_OF_SCOPE,
                f"{name}: issuing point {place} is not one of app {self.app.app_id}'s",
            )
        return place

    def operator(self, r: Reader, person_field: str, *, place_field: str = "placeCode") -> Operator:
        person = r.text(person_field, required=True, max_len=60)
        return Operator(self.unit_code, person, self.place(r, place_field))

    def own(self, bill: IssuedBill) -> IssuedBill:
        """The bill, if this app may see it: another unit's bill does not exist
        for it; another point's is out of its scope."""
        if bill.unit_code != self.unit_code:
            raise NotFound(f"no bill {bill.bill_code}/{bill.bill_no}")
        if self.app.places and bill.place_code not in self.app.places:
            raise GatewayError(
                Result.OUT_OF_SCOPE,
                f"bill {bill.bill_code}/{bill.bill_no} was issued at issuing point "
                f"{bill.place_code}, not one of app {self.app.app_id}'s",
            )
        return bill

    async def bill(self, r: Reader, code: str = "billBatchCode", no: str = "billNo") -> IssuedBill:
        key = BillKey.number(
            r.text(code, required=True, max_len=50), r.text(no, required=True, max_len=20)
        )
        return self.own(await self.services.issuance.get_bill(key))

    def picture_url(self, bill_code: str, bill_no: str, check_code: str) -> str:
        """The bill's H5 page once the public pages serve one; empty until then."""
        h5 = self.services.h5_url
        return h5(bill_code, bill_no, check_code) if h5 else ""
