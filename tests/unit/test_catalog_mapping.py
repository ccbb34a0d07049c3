"""The mapping step of validation: HIS codes resolved to fiscal codes by the
bill's date, withdrawn items refused, every refusal with its field path."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from engine.catalog import HisMapping, Period, overlapping
from engine.errors import FieldError
from engine.model import Catalog, ChargeItemInput, ListItemInput, ValidBill
from engine.validation import check
from tests import factories
from usecases import demo


def _catalog() -> Catalog:
    base = factories.catalog()
    unit = base.units[demo.UNIT_CODE]
    unit = replace(
        unit,
        charge_periods={"A05": Period(None, date(2026, 6, 1))},
        his_codes={
            "XY.0001": (HisMapping("XY.0001", "A01", Period(date(2024, 1, 1), None)),),
            "GH-PT": (
                HisMapping("GH-PT", "A06", Period(date(2024, 1, 1), date(2026, 1, 1))),
                HisMapping("GH-PT", "A04", Period(date(2026, 1, 1), None)),
            ),
        },
    )
    return Catalog(units={demo.UNIT_CODE: unit})


def _one_item(
    his: str, bus_time: str, *, code: str = "", name: str = ""
) -> ValidBill | list[FieldError]:
    b = factories.bill(1)
    item = ChargeItemInput(1, code, name, "次", "10", "1", "10.00", "0", "", his)
    b = replace(
        b,
        bus_time=bus_time,
        total_amount="10.00",
        charge_items=(item,),
        list_items=(),
        pay_channels=(replace(b.pay_channels[0], amount="10.00"),),
        insurance=replace(
            b.insurance,
            fund_pay="",
            other_fund_pay="",
            account_pay="",
            own_pay="",
            self_pay="",
            medical_insurance_id="",
        ),
    )
    return check(b, _catalog())


def test_an_his_code_resolves_to_the_fiscal_code_and_name_of_the_bill_s_date() -> None:
    got = _one_item("XY.0001", "20260301100000000")
    assert isinstance(got, ValidBill), got
    [c] = got.charge_items
    assert (c.charge_code, c.charge_name) == ("A01", "西药费")
    old = _one_item("GH-PT", "20251231235959000")
    new = _one_item("GH-PT", "20260101000000000")
    assert isinstance(old, ValidBill) and isinstance(new, ValidBill)
    assert old.charge_items[0].charge_code == "A06"
    assert new.charge_items[0].charge_code == "A04"


def test_unknown_and_unmapped_his_codes_are_refused_with_their_path() -> None:
    [err] = _one_item("NOPE", "20260301100000000")  # type: ignore[misc]
    assert err.field == "charge_items[0].his_code" and "no mapping" in err.message
    [err] = _one_item("XY.0001", "20231231100000000")  # type: ignore[misc]
    assert err.field == "charge_items[0].his_code"
    assert "not mapped on 2023-12-31" in err.message


def test_a_charge_code_that_disagrees_with_the_mapping_is_refused() -> None:
    [err] = _one_item("XY.0001", "20260301100000000", code="A03", name="检查费")  # type: ignore[misc]
    assert err.field == "charge_items[0].charge_code" and "maps to" in err.message


def test_a_withdrawn_item_is_refused_from_its_end_date_only() -> None:
    ok = _one_item("", "20260531235959000", code="A05", name="化验费")
    assert isinstance(ok, ValidBill)
    [err] = _one_item("", "20260601000000000", code="A05", name="化验费")  # type: ignore[misc]
    assert err.field == "charge_items[0].charge_code"
    assert "withdrawn from 2026-06-01" in err.message


def test_list_items_may_name_their_charge_item_by_his_code() -> None:
    b = factories.bill(1)
    item = ChargeItemInput(1, "", "", "盒", "18.50", "2", "37.00", "0", "", "XY.0001")
    line = ListItemInput(
        1, "YP001", "阿莫西林胶囊", "XY.0001", "0.25g*24", "盒", "18.50", "2", "37.00", "0"
    )
    b = replace(
        b,
        total_amount="37.00",
        charge_items=(item,),
        list_items=(line,),
        pay_channels=(replace(b.pay_channels[0], amount="37.00"),),
        insurance=replace(
            b.insurance,
            fund_pay="",
            other_fund_pay="",
            account_pay="",
            own_pay="",
            self_pay="",
            medical_insurance_id="",
        ),
    )
    got = check(b, _catalog())
    assert isinstance(got, ValidBill), got
    assert got.list_items[0].charge_code == "A01"


def test_overlapping_periods_are_found() -> None:
    a = HisMapping("H", "A01", Period(date(2024, 1, 1), date(2025, 1, 1)))
    b = HisMapping("H", "A02", Period(date(2024, 6, 1), None))
    c = HisMapping("H", "A02", Period(date(2025, 1, 1), None))
    assert overlapping([a], b) == a
    assert overlapping([a], c) is None


def test_every_catalog_method_names_its_permission() -> None:
    from ebill.grpc.permissions import RULES
    from engine.identity import Permission
    from protos.ebill.v1 import catalog_pb2

    methods = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].methods_by_name
    rules = {m: RULES[f"/ebill.v1.CatalogService/{m}"] for m in methods}
    assert rules["ListEntries"].permission is Permission.CATALOG_READ
    assert rules["UpsertEntries"].permission is Permission.CATALOG_MANAGE
    # The unit's signing keys: a signed-in person, never an app.
    assert rules["ActivateCertificate"].permission is Permission.KEYS_MANAGE
    assert rules["ActivateCertificate"].users_only
