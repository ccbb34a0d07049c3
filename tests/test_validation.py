"""Every validation rule names the field at fault."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.errors import InvalidArgument
from engine.model import (
    Catalog,
    ChargeItemInput,
    InsuranceInput,
    ListItemInput,
    MedicalInput,
    PayChannelInput,
)
from engine.money import format_fen, parse_fen, parse_quantity
from engine.validation import check, validate
from tests.factories import bill, catalog
from usecases import demo


def fields_of(b: object) -> list[str]:
    result = check(b, catalog())  # type: ignore[arg-type]
    assert isinstance(result, list), "expected the request to be rejected"
    return [e.field for e in result]


def test_demo_bills_are_valid_and_amounts_are_exact() -> None:
    for seq in range(200):
        b = bill(seq)
        v = validate(b, catalog())
        assert v.total_fen == parse_fen(b.total_amount)
        assert v.total_fen == sum(c.amt_fen for c in v.charge_items)
        assert v.total_fen == sum(p.amount_fen for p in v.pay_channels)


@pytest.mark.parametrize(
    ("text", "fen"),
    [("0", 0), ("0.5", 50), ("12.30", 1230), ("99999999999999.99", 9999999999999999)],
)
def test_parse_fen(text: str, fen: int) -> None:
    assert parse_fen(text) == fen
    assert parse_fen(format_fen(fen)) == fen


@pytest.mark.parametrize("text", ["", "-1", "1.234", "1e3", "01.00", "1,00", " . ", "NaN", "0.1.1"])
def test_parse_fen_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_fen(text)


def test_quantities_take_four_places_not_five() -> None:
    assert str(parse_quantity("1.2345")) == "1.2345"
    with pytest.raises(ValueError):
        parse_quantity("1.23456")


def _first_charge(b: object, **changes: str) -> tuple[ChargeItemInput, ...]:
    items = b.charge_items  # type: ignore[attr-defined]
    return (replace(items[0], **changes), *items[1:])


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"unit_code": ""}, "unit_code"),
        ({"unit_code": "nope"}, "unit_code"),
        ({"bus_no": ""}, "bus_no"),
        ({"bus_no": "has space"}, "bus_no"),
        ({"bus_type": "99"}, "bus_type"),
        ({"bus_type": "04"}, "bus_type"),  # not a business type
        ({"bus_type": "11"}, "medical"),  # a non-tax bill has no medical details
        ({"bus_time": "2026-11-23"}, "bus_time"),
        ({"bus_time": "20261340080000000"}, "bus_time"),
        ({"place_code": ""}, "place_code"),
        ({"place_code": "777"}, "place_code"),
        ({"place_code": "009"}, "place_code"),  # disabled issuing point
        ({"cashier": ""}, "cashier"),
        ({"author": " "}, "author"),
        ({"checker": "x" * 51}, "checker"),
        ({"remark": "x" * 201}, "remark"),
        ({"total_amount": "abc"}, "total_amount"),
        ({"total_amount": "0"}, "total_amount"),
        ({"total_amount": "1.001"}, "total_amount"),
        ({"total_amount": "-5.00"}, "total_amount"),
        ({"charge_items": ()}, "charge_items"),
        ({"pay_channels": ()}, "pay_channels"),
    ],
)
def test_top_level_fields(changes: dict[str, object], field: str) -> None:
    assert field in fields_of(bill(**changes))


def test_payer_fields() -> None:
    b = bill()
    assert fields_of(replace(b, payer=replace(b.payer, name=""))) == ["payer.name"]
    assert fields_of(replace(b, payer=replace(b.payer, payer_type="3"))) == ["payer.payer_type"]
    assert fields_of(replace(b, payer=replace(b.payer, id_card_no="12345"))) == ["payer.id_card_no"]
    assert fields_of(replace(b, payer=replace(b.payer, tel="phone"))) == ["payer.tel"]
    assert fields_of(replace(b, payer=replace(b.payer, email="a@b"))) == ["payer.email"]


def test_charge_item_fields_carry_their_index() -> None:
    b = bill(3)
    assert len(b.charge_items) >= 1
    assert "charge_items[0].amt" in fields_of(
        replace(b, charge_items=_first_charge(b, amt="1.5.0"))
    )
    assert "charge_items[0].charge_code" in fields_of(
        replace(b, charge_items=_first_charge(b, charge_code="Z99"))
    )
    assert "charge_items[0].std" in fields_of(replace(b, charge_items=_first_charge(b, std="")))
    assert "charge_items[0].number" in fields_of(
        replace(b, charge_items=_first_charge(b, number="1.00001"))
    )
    assert "charge_items[0].charge_name" in fields_of(
        replace(b, charge_items=_first_charge(b, charge_name=""))
    )
    assert "charge_items[0].self_amt" in fields_of(
        replace(b, charge_items=_first_charge(b, self_amt="999999.00"))
    )


def test_duplicate_charge_code_is_named() -> None:
    b = bill(3)
    dup = (*b.charge_items, b.charge_items[0])
    assert f"charge_items[{len(dup) - 1}].charge_code" in fields_of(replace(b, charge_items=dup))


def test_total_must_equal_charge_items_and_pay_channels() -> None:
    b = bill(5)
    more = format_fen(parse_fen(b.total_amount) + 1)
    # total off by one fen: charge items disagree, and so do pay channels
    assert fields_of(replace(b, total_amount=more))[:2] == ["total_amount", "pay_channels"]
    channels = (
        replace(b.pay_channels[0], amount=format_fen(parse_fen(b.pay_channels[0].amount) - 1)),
        *b.pay_channels[1:],
    )
    assert fields_of(replace(b, pay_channels=channels)) == ["pay_channels"]


def test_pay_channel_fields() -> None:
    b = bill(5)
    bad_code = (replace(b.pay_channels[0], pay_channel_code="99"), *b.pay_channels[1:])
    assert "pay_channels[0].pay_channel_code" in fields_of(replace(b, pay_channels=bad_code))
    bad_amount = (PayChannelInput("02", "ten"),)
    assert "pay_channels[0].amount" in fields_of(replace(b, pay_channels=bad_amount))


def test_list_items_must_add_up_to_their_charge_item() -> None:
    b = bill(1)
    idx = next(i for i, c in enumerate(b.charge_items) if c.charge_code == "A01")
    li = b.list_items[0]
    extra = ListItemInput(2, "Y9", "extra", "A01", "", "盒", "1.00", "1", "1.00")
    assert fields_of(replace(b, list_items=(li, extra))) == [f"charge_items[{idx}].amt"]
    stray = replace(li, charge_code="A07")
    assert "list_items[0].charge_code" in fields_of(replace(b, list_items=(stray,)))


def test_insurance_split_must_cover_the_total() -> None:
    b = bill(7)
    total = parse_fen(b.total_amount)
    ok = InsuranceInput(fund_pay=format_fen(total - 100), own_pay="1.00", self_pay="0.50")
    validate(replace(b, insurance=ok), catalog())
    short = replace(ok, fund_pay=format_fen(total - 101))
    assert fields_of(replace(b, insurance=short)) == ["insurance"]
    self_over = replace(ok, self_pay="2.00")
    assert fields_of(replace(b, insurance=self_over)) == ["insurance.self_pay"]
    assert fields_of(replace(b, insurance=replace(ok, account_pay="x"))) == [
        "insurance.account_pay"
    ]


def test_validate_raises_invalid_argument_naming_the_first_field() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate(bill(bus_no="", cashier=""), catalog())
    assert err.value.field == "bus_no"
    assert err.value.code == "INVALID_ARGUMENT"
    assert "and 1 more" in err.value.message


def test_business_type_without_a_bill_code_is_refused() -> None:
    cat = catalog()
    unit = cat.units[demo.UNIT_CODE]
    codes = {t: c for t, c in unit.bill_codes.items() if t != "10"}
    narrowed = Catalog(units={demo.UNIT_CODE: replace(unit, bill_codes=codes)})
    result = check(bill(bus_type="10", medical=MedicalInput()), narrowed)
    assert isinstance(result, list)
    assert [e.field for e in result] == ["bus_type"]
