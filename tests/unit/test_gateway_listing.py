"""The listing interfaces' reading of the vendor's time ranges."""

from __future__ import annotations

from datetime import datetime

import pytest

from ebill.http.gateway.fields import Reader
from ebill.http.gateway.listing import _range
from engine.errors import InvalidArgument
from engine.model import CST


def test_a_range_is_read_in_local_time_and_a_coarse_end_takes_its_period() -> None:
    start, end = _range(
        Reader({"busBgnDate": "20261123080000123", "busEndDate": "20261123"}), by_issue=False
    )
    assert start == datetime(2026, 11, 23, 8, 0, 0, 123000)
    assert end == datetime(2026, 11, 23, 23, 59, 59, 999999)
    start, end = _range(
        Reader({"busBgnDate": "202611230800", "busEndDate": "20261123080000"}), by_issue=True
    )
    assert start == datetime(2026, 11, 23, 8, 0, tzinfo=CST)
    assert end == datetime(2026, 11, 23, 8, 0, 0, 999999, tzinfo=CST)


@pytest.mark.parametrize(
    ("bgn", "field"),
    [("2026-11-23", "busBgnDate"), ("20261332", "busBgnDate"), ("", "busBgnDate")],
)
def test_a_stamp_that_is_not_one_is_refused_naming_its_field(bgn: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        _range(Reader({"busBgnDate": bgn, "busEndDate": "20261123"}), by_issue=False)
    assert exc.value.field_errors[0].field == field
