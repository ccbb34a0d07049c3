"""The vendor envelope, money and field names, pure: no server, no database."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import pytest

from ebill.http.gateway.bills import bill_request
from ebill.http.gateway.envelope import (
    Envelope,
    EnvelopeError,
    answer,
    decode_data,
    dumps,
    parse_envelope,
    sign,
    signature_ok,
    vendor_key,
)
from ebill.http.gateway.fields import Reader, vendor_error, vendor_path
from engine.errors import FieldError, InvalidArgument
from tests import his_client

APPID, KEY = "app1", "192006250b4c09247ec02f6a2d"


def b64(obj: object) -> str:
    return base64.b64encode(json.dumps(obj, ensure_ascii=False).encode()).decode()


def test_sign_is_the_fixed_order_string_upper_md5_as_the_his_client_builds_it() -> None:
    # The HIS client in the field (clsEinvoice_BS.cls EInvoiceRequest) signs
    # "appid=..&data=..&noise=..&key=..&version=.." and compares Hex$ (upper case).
    import hashlib

    text = f"appid={APPID}&data=ewogI&noise=ibuaiVcKdpRxkhJA&key={KEY}&version=1.0"
    expected = hashlib.md5(text.encode()).hexdigest().upper()
    assert sign(APPID, "ewogI", "ibuaiVcKdpRxkhJA", KEY) == expected
    # The test's HIS client (written apart from the gateway) agrees.
    assert his_client.sign(APPID, "ewogI", "ibuaiVcKdpRxkhJA", KEY) == expected
    env = Envelope(APPID, "ewogI", "ibuaiVcKdpRxkhJA", "1.0", expected.lower())
    assert signature_ok(env, KEY)  # compared case-insensitively
    assert not signature_ok(Envelope(APPID, "ewogJ", env.noise, "1.0", expected), KEY)


def test_vendor_key_is_text_for_ascii_secrets_hex_for_random_ones() -> None:
    assert vendor_key(b"192006250b4c09247ec02f6a2d") == "192006250b4c09247ec02f6a2d"
    assert vendor_key(b"\x00\xff\x10") == "00ff10"


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"not json", "body"),
        (b"[1]", "body"),
        (b'{"data": "e30=", "noise": "n1", "sign": "X"}', "appid"),
        (b'{"appid": "a", "data": "", "noise": "n1", "sign": "X"}', "data"),
        (b'{"appid": "a", "data": "e30=", "noise": "n 1", "sign": "X"}', "noise"),
        (
            b'{"appid": "a", "data": "e30=", "noise": "n1", "sign": "X", "version": "2.0"}',
            "version",
        ),
        (b"\xff\xfe", "body"),
    ],
)
def test_malformed_envelopes_name_the_part(body: bytes, what: str) -> None:
    with pytest.raises(EnvelopeError) as err:
        parse_envelope(body)
    assert err.value.what == what


def test_data_numbers_are_decimal_never_float() -> None:
    obj = decode_data(b64({"totalAmt": 0.1}).replace("0.1", "0.1"))
    assert obj == {"totalAmt": Decimal("0.1")}
    raw = base64.b64encode(b'{"a": 12.30, "b": 1e2, "c": 7}').decode()
    got = decode_data(raw)
    assert got["a"] == Decimal("12.30") and isinstance(got["a"], Decimal)
    assert isinstance(got["b"], Decimal) and got["c"] == 7
    for bad in ("!!!", base64.b64encode(b"\xff").decode(), base64.b64encode(b"[1]").decode()):
        with pytest.raises(EnvelopeError):
            decode_data(bad)
    with pytest.raises(EnvelopeError):
        decode_data(base64.b64encode(b'{"a": NaN}').decode())


def test_amounts_with_more_than_two_decimals_are_refused_not_rounded() -> None:
    r = Reader({"a": Decimal("12.345"), "b": Decimal("12.3"), "c": Decimal("12.300"), "d": 5})
    with pytest.raises(InvalidArgument) as err:
        r.amount("a")
    assert err.value.field == "a" and "12.345" in err.value.message
    assert r.amount("b") == "12.30"
    assert r.amount("c") == "12.30"  # exact: nothing is lost
    assert r.amount("d") == "5"
    with pytest.raises(InvalidArgument):
        Reader({"a": True}).amount("a")
    # Quantities keep up to 4 decimals (the engine's own rule checks them).
    assert Reader({"n": Decimal("1.2345"), "i": 3}).quantity("n") == "1.2345"
    assert Reader({"i": 3}).quantity("i") == "3"


def test_dumps_writes_decimals_exactly_as_json_numbers() -> None:
    text = dumps({"a": Decimal("12.50"), "b": [Decimal("0E-2"), 1, "x", None, True], "中": "文"})
    assert text == '{"a":12.50,"b":[0.00,1,"x",null,true],"中":"文"}'
    assert json.loads(text, parse_float=Decimal)["a"] == Decimal("12.50")


def test_answer_is_signed_and_nests_base64_message() -> None:
    env = answer(APPID, KEY, "S0000", {"billNo": "0000000001", "amt": Decimal("1.00")})
    assert env["sign"] == sign(APPID, env["data"], env["noise"], KEY)
    inner = json.loads(base64.b64decode(env["data"]))
    assert inner["result"] == "S0000"
    assert json.loads(base64.b64decode(inner["message"])) == {"billNo": "0000000001", "amt": 1.0}
    unsigned = answer("who", "", "E1002", "unknown")
    assert unsigned["sign"] == ""


def test_engine_field_paths_are_renamed_to_the_vendor_names() -> None:
    assert vendor_path("bill.charge_items[2].amt") == "chargeDetail[2].amt"
    assert vendor_path("bill.payer.name") == "payer"
    assert vendor_path("bill.payer.id_card_no") == "idCardNo"
    assert vendor_path("bill.insurance.own_pay") == "selfCashPay"
    assert vendor_path("bill.medical.department") == "patientCategory"
    assert vendor_path("bill.pay_channels[0].amount") == "payChannelDetail[0].payChannelValue"
    assert vendor_path("bills[3].total_amount", "eBillList[3]") == "eBillList[3].totalAmt"
    err = InvalidArgument.from_errors(
        [FieldError("bill.bus_time", "bad"), FieldError("bill.list_items[0].list_name", "x")]
    )
    renamed = vendor_error(err)
    assert [v.field for v in renamed.field_errors] == ["busDateTime", "listDetail[0].name"]


def _outpatient(**over: object) -> dict[str, object]:
    bill: dict[str, object] = {
        "busNo": "B1",
        "busType": "02",
        "payer": "张三",
        "busDateTime": "20261123101010123",
        "placeCode": "001",
        "payee": "p",
        "author": "a",
        "totalAmt": Decimal("30.00"),
        "fundPay": 0,
        "otherfundPay": 0,
        "accountPay": 0,
        "selfCashPay": Decimal("30.00"),
        "sex": "男",
        "age": "35",
        "patientCategory": "内科",
        "chargeDetail": [
            {
                "sortNo": 1,
                "chargeCode": "A03",
                "chargeName": "检查费",
                "std": 30,
                "number": 1,
                "amt": Decimal("30.00"),
            }
        ],
        "payChannelDetail": [{"payChannelCode": "02", "payChannelValue": Decimal("30.00")}],
    }
    bill.update(over)
    return bill


def test_outpatient_request_maps_onto_the_engine_bill() -> None:
    req = bill_request(Reader(_outpatient()), unit_code="U1", kind="outpatient")
    assert (req.unit_code, req.bus_no, req.bus_type, req.payer.name) == ("U1", "B1", "02", "张三")
    assert req.total_amount == "30.00" and req.charge_items[0].amt == "30.00"
    assert req.charge_items[0].std == "30" and req.pay_channels[0].amount == "30.00"
    assert req.cashier == "p" and req.medical.department == "内科"
    # Nothing insured (all zero): no split, which the engine would check against the total.
    assert not req.HasField("insurance")
    insured = bill_request(
        Reader(_outpatient(fundPay=Decimal("20.00"), selfCashPay=Decimal("10.00"))),
        unit_code="U1",
        kind="outpatient",
    )
    assert insured.insurance.fund_pay == "20.00" and insured.insurance.own_pay == "10.00"


def test_an_interface_takes_only_its_business_types() -> None:
    with pytest.raises(InvalidArgument) as err:
        bill_request(Reader(_outpatient(busType="01")), unit_code="U1", kind="outpatient")
    assert err.value.field == "busType"
    common = bill_request(
        Reader(_outpatient(busType="11")), unit_code="U1", kind="common"
    )  # non-tax: no medical sections carried
    assert not common.HasField("medical") and not common.HasField("insurance")
