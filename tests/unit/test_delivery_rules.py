"""Delivery rules (engine/delivery.py): addresses, masks, backoff, templates."""

from __future__ import annotations

from datetime import datetime

import pytest

from engine.delivery import (
    DEFAULT_TEMPLATES,
    Channel,
    DeliveryBill,
    MessageKind,
    Template,
    backoff_s,
    bill_url,
    check_template,
    mask_address,
    mask_name,
    normalise_address,
    normalise_phone,
    render,
)
from engine.errors import InvalidArgument

BILL = DeliveryBill(
    bill_id=1, unit_code="U", unit_name="某医院", place_code="001", bill_code="44060119",
    bill_no="0000000123", check_code="9f8e7d", total_fen=-12030,
    issued_at=datetime(2026, 11, 23, 9, 0), payer_name="欧阳娜娜", tel="13800000001",
    red_of="44060119/0000000100",
)  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "want"),
    [("13800000001", "13800000001"), ("+86 138-0000-0001", "13800000001"),
     ("008613800000001", "13800000001"), ("07597750000", None), ("12800000001", None),
     ("1380000000", None), ("", None)],
)  # fmt: skip
def test_only_mainland_mobiles_get_sms(raw: str, want: str | None) -> None:
    assert normalise_phone(raw) == want


def test_addresses_and_masks() -> None:
    assert normalise_address(Channel.EMAIL, " Li.Si@Example.COM ") == "Li.Si@example.com"
    assert normalise_address(Channel.EMAIL, "no-at-sign") is None
    assert normalise_address(Channel.WECHAT, "has space") is None
    assert mask_address(Channel.SMS, "13800000001") == "138****0001"
    assert mask_address(Channel.EMAIL, "lisi@example.com") == "l***@example.com"
    assert mask_name("欧阳娜娜") == "欧***" and mask_name("") == ""


def test_backoff_grows_and_is_capped() -> None:
    waits = [backoff_s(n) for n in range(1, 12)]
    assert waits[:3] == [5, 10, 20] and max(waits) == 600 and waits == sorted(waits)


def test_a_red_bill_renders_the_red_template_with_the_link() -> None:
    url = bill_url("https://h.example/", BILL.bill_code, BILL.bill_no, BILL.check_code)
    assert url == "https://h.example/bill/44060119/0000000123?c=9f8e7d"
    m = render(DEFAULT_TEMPLATES[Channel.SMS, BILL.kind], BILL, BILL.tel, url)
    assert BILL.kind is MessageKind.RED and m.provider_template == "SMS_EBILL_RED"
    assert m.params == {"unit": "某医院", "code": "44060119", "no": "0000000123",
                        "amount": "120.30", "url": url}  # fmt: skip
    assert "44060119-0000000100" in m.body
    mail = render(DEFAULT_TEMPLATES[Channel.EMAIL, MessageKind.ISSUED], BILL, "a@b.c", url)
    assert mail.subject.startswith("【某医院】") and url in mail.body


def test_every_default_template_passes_its_own_check() -> None:
    for t in DEFAULT_TEMPLATES.values():
        check_template(t)


@pytest.mark.parametrize(
    ("body", "field"),
    [("{{ nope }}", "template.body"), ("{% for %}", "template.body"),
     ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "template.body"),
     ("{{ range(10**9) | list }}", "template.body")],
)  # fmt: skip
def test_a_bad_template_is_refused_with_its_field(body: str, field: str) -> None:
    t = Template(Channel.EMAIL, MessageKind.ISSUED, "", "subject", body)
    with pytest.raises(InvalidArgument) as e:
        check_template(t)
    assert e.value.field == field


def test_template_params_are_bounded() -> None:
    base = DEFAULT_TEMPLATES[Channel.SMS, MessageKind.ISSUED]
    with pytest.raises(InvalidArgument):
        check_template(Template(base.channel, base.kind, "X", "", "b", {"bad name": "x"}))
    with pytest.raises(InvalidArgument):
        check_template(Template(base.channel, base.kind, "", "", "b", {}))


@pytest.mark.parametrize("body", ["{{ 'x' * 100000000 }}", "{{ 2 ** 1000000 }}"])
def test_a_template_cannot_eat_memory(body: str) -> None:
    with pytest.raises(InvalidArgument):
        check_template(Template(Channel.EMAIL, MessageKind.ISSUED, "", "s", body))
