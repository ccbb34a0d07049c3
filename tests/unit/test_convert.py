"""Wire <-> domain conversion at the edge loses nothing."""

from __future__ import annotations

from engine.serde import input_from_dict, input_to_dict
from protos.ebill.v1 import bill_pb2
from usecases import demo
from wire.bills import bill_from_pb, input_to_pb


def test_round_trips() -> None:
    for i in range(100):
        b = demo.demo_bill(i)
        assert bill_from_pb(input_to_pb(b)) == b
        assert (
            bill_from_pb(bill_pb2.BillRequest.FromString(input_to_pb(b).SerializeToString())) == b
        )
        assert input_from_dict(input_to_dict(b)) == b
