"""Issue #11 items 2, 3 and 5: every string of a bill request is bounded, shaped
and free of control characters, and messages quote only a short prefix of a value."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.errors import FieldError, InvalidArgument
from engine.model import BillInput, MedicalInput
from engine.validation import check, quote, validate
from tests.factories import bill, catalog


def errors_of(b: BillInput) -> list[FieldError]:
    result = check(b, catalog())
    assert isinstance(result, list), "expected the request to be refused"
    return result


def fields_of(b: BillInput) -> list[str]:
    return [e.field for e in errors_of(b)]


def medical(**changes: str) -> BillInput:
    b = bill(7)
    return replace(b, medical=replace(b.medical, **changes))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"patient_no": "P" * 1_000_000}, "medical.patient_no"),
        ({"patient_no": "P 1"}, "medical.patient_no"),
        ({"case_number": "C" * 51}, "medical.case_number"),
        ({"sex": "banana"}, "medical.sex"),
        ({"sex": "3"}, "medical.sex"),
        ({"age": "-5"}, "medical.age"),
        ({"age": "151"}, "medical.age"),
        ({"age": "151岁"}, "medical.age"),
        ({"age": "abc"}, "medical.age"),
        ({"age": "9" * 100}, "medical.age"),
        ({"consultation_date": "2026-13-01"}, "medical.consultation_date"),
        ({"consultation_date": "20260230"}, "medical.consultation_date"),
        ({"consultation_date": "yesterday"}, "medical.consultation_date"),
        ({"department": "科" * 51}, "medical.department"),
        ({"medical_institution": "院" * 101}, "medical.medical_institution"),
    ],
)
def test_medical_fields_are_bounded_and_shaped(changes: dict[str, str], field: str) -> None:
    assert fields_of(medical(**changes)) == [field]


def test_the_edge_path_of_a_medical_field() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate(medical(patient_no="P" * 1_000_000), catalog())
    prefixed = FieldError(err.value.field, err.value.message).prefixed("bill")
    assert prefixed.field == "bill.medical.patient_no"
    assert len(err.value.message) < 200


@pytest.mark.parametrize(
    "changes",
    [
        {"sex": "男"},
        {"sex": "女"},
        {"sex": "1"},
        {"sex": "9"},
        {"age": "0"},
        {"age": "35"},
        {"age": "35岁"},
        {"age": "1岁3月"},
        {"age": "3个月"},
        {"age": "2周"},
        {"age": "15天"},
        {"age": "6小时"},
        {"age": "0.5"},
        {"consultation_date": "20261123"},
        {"consultation_date": "2026-11-23"},
        {"patient_no": "ZY2026-000123/1"},
        {"case_number": "BA.20261123.7"},
        {"department": "心血管内科（一病区）"},
        {"patient_no": "", "case_number": "", "sex": "", "age": "", "consultation_date": ""},
    ],
)
def test_medical_values_hospitals_send_are_accepted(changes: dict[str, str]) -> None:
    validate(medical(**changes), catalog())


def test_other_strings_are_bounded() -> None:
    b = bill(1)
    li = b.list_items
    assert li, "the demo bill has list items"
    assert fields_of(replace(b, list_items=(replace(li[0], list_code="L" * 51), *li[1:]))) == [
        "list_items[0].list_code"
    ]
    assert fields_of(replace(b, list_items=(replace(li[0], spec="s" * 51), *li[1:]))) == [
        "list_items[0].spec"
    ]
    assert fields_of(replace(b, payer=replace(b.payer, email="a" * 60 + "@" + "b" * 300 + ".cn")))
    assert "place_code" in fields_of(replace(b, place_code="0" * 10_000))
    assert "unit_code" in fields_of(replace(b, unit_code="U" * 10_000))
    pc = b.pay_channels
    assert fields_of(replace(b, pay_channels=(replace(pc[0], pay_channel_code="9" * 21), *pc[1:])))
    ins = replace(b.insurance, medical_insurance_id="医保 号", fund_pay="0.00", own_pay="0.00")
    assert "insurance.medical_insurance_id" in fields_of(replace(b, insurance=ins))


# Every text field of a request, as a function putting a value into it.
_TEXT_FIELDS = {
    "payer.name": lambda b, v: replace(b, payer=replace(b.payer, name=v)),
    "payer.card_type": lambda b, v: replace(b, payer=replace(b.payer, card_type=v)),
    "payer.card_no": lambda b, v: replace(b, payer=replace(b.payer, card_no=v)),
    "payer.email": lambda b, v: replace(b, payer=replace(b.payer, email=f"{v}@example.cn")),
    "cashier": lambda b, v: replace(b, cashier=v),
    "author": lambda b, v: replace(b, author=v),
    "checker": lambda b, v: replace(b, checker=v),
    "remark": lambda b, v: replace(b, remark=v),
    "place_code": lambda b, v: replace(b, place_code=v),
    "unit_code": lambda b, v: replace(b, unit_code=v),
    "charge_items[0].charge_name": lambda b, v: replace(
        b, charge_items=(replace(b.charge_items[0], charge_name=v), *b.charge_items[1:])
    ),
    "charge_items[0].unit": lambda b, v: replace(
        b, charge_items=(replace(b.charge_items[0], unit=v), *b.charge_items[1:])
    ),
    "charge_items[0].remark": lambda b, v: replace(
        b, charge_items=(replace(b.charge_items[0], remark=v), *b.charge_items[1:])
    ),
    "charge_items[0].amt": lambda b, v: replace(
        b, charge_items=(replace(b.charge_items[0], amt=v), *b.charge_items[1:])
    ),
    "list_items[0].list_name": lambda b, v: replace(
        b, list_items=(replace(b.list_items[0], list_name=v), *b.list_items[1:])
    ),
    "list_items[0].spec": lambda b, v: replace(
        b, list_items=(replace(b.list_items[0], spec=v), *b.list_items[1:])
    ),
    "list_items[0].unit": lambda b, v: replace(
        b, list_items=(replace(b.list_items[0], unit=v), *b.list_items[1:])
    ),
    "pay_channels[0].pay_channel_code": lambda b, v: replace(
        b, pay_channels=(replace(b.pay_channels[0], pay_channel_code=v), *b.pay_channels[1:])
    ),
    "medical.patient_no": lambda b, v: replace(b, medical=replace(b.medical, patient_no=v)),
    "medical.department": lambda b, v: replace(b, medical=replace(b.medical, department=v)),
    "medical.medical_institution": lambda b, v: replace(
        b, medical=replace(b.medical, medical_institution=v)
    ),
    "insurance.med_care_institution": lambda b, v: replace(
        b,
        insurance=replace(b.insurance, med_care_institution=v, fund_pay="0.00", own_pay=""),
    ),
}


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\t", "\n", "\x7f", "\x85", "\x9b"])
@pytest.mark.parametrize("field", sorted(_TEXT_FIELDS))
def test_control_characters_are_refused_with_the_field_path(field: str, char: str) -> None:
    b = bill(1)
    assert b.list_items
    result = errors_of(_TEXT_FIELDS[field](b, f"x{char}y"))
    mine = [e for e in result if e.field == field]
    assert mine, f"{field} accepted U+{ord(char):04X}: {result}"
    assert "control character" in mine[0].message


def test_cjk_and_full_width_punctuation_are_accepted() -> None:
    b = bill(1)
    text = "张伟（门诊）：复诊，“遵医嘱”；Ｎｏ．１２　、。！？《》【】·—…"
    ok = replace(
        b,
        payer=replace(b.payer, name="欧阳·娜娜"),
        remark=text,
        medical=MedicalInput(patient_no="P00000005", sex="女", age="35岁", department="内科（一）"),
        charge_items=(
            replace(b.charge_items[0], charge_name="西药费（甲类）"),
            *b.charge_items[1:],
        ),
    )
    validate(ok, catalog())


@pytest.mark.parametrize("field", sorted(_TEXT_FIELDS))
def test_messages_quote_a_short_prefix_of_a_long_value(field: str) -> None:
    b = bill(1)
    long = "Ｚ" * 10_000
    for e in errors_of(_TEXT_FIELDS[field](b, long)):
        assert len(e.message) < 160, (e.field, len(e.message))


def test_a_ten_thousand_character_code_gives_a_short_message() -> None:
    b = bill(1)
    code = "A" * 10_000
    for changed in (
        replace(
            b, charge_items=(replace(b.charge_items[0], charge_code=code), *b.charge_items[1:])
        ),
        replace(b, bus_type=code),
        replace(b, pay_channels=(replace(b.pay_channels[0], pay_channel_code=code[:20]),)),
        replace(b, list_items=(replace(b.list_items[0], charge_code=code), *b.list_items[1:])),
        replace(b, total_amount=code),
        replace(b, medical=replace(b.medical, sex=code)),
    ):
        with pytest.raises(InvalidArgument) as err:
            validate(changed, catalog())
        assert len(str(err.value)) < 200, str(err.value)[:300]
        for e in errors_of(changed):
            assert len(e.message) < 160, (e.field, e.message[:100])


def test_quote() -> None:
    assert quote("abc") == "'abc'"
    assert quote("x" * 10_000) == repr("x" * 32) + "…(10000 chars)"
