"""A demo hospital and realistic settled charges, for `ebill run`, tests and benchmarks."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from engine.model import (
    BillInput,
    ChargeItemInput,
    InsuranceInput,
    ListItemInput,
    MedicalInput,
    PayChannelInput,
    PayerInput,
)
from engine.money import format_fen

__all__ = [
    "BILL_CODES",
    "CHARGE_CODES",
    "ISSUING_POINTS",
    "UNIT_CODE",
    "UNIT_NAME",
    "demo_bill",
]

UNIT_CODE = "440823001"
UNIT_NAME = "遂溪县人民医院（演示）"
ISSUING_POINTS = [("001", "门诊收费窗口1"), ("002", "门诊自助机"), ("003", "住院结算处")]
CHARGE_CODES = [
    ("A01", "西药费"),
    ("A02", "中成药费"),
    ("A03", "检查费"),
    ("A04", "治疗费"),
    ("A05", "化验费"),
    ("A06", "挂号费"),
    ("A07", "床位费"),
    # Non-medical items: non-tax revenue, 往来 funds, donations.
    ("B01", "行政事业性收费"),
    ("C01", "往来款"),
    ("D01", "捐赠收入"),
]
# (bus_type, bill_code, name)
BILL_CODES = [
    ("01", "44060219", "医疗住院收费票据（电子）"),
    ("02", "44060119", "医疗门诊收费票据（电子）"),
    ("03", "44060119", "医疗门诊收费票据（电子）"),
    ("05", "44060119", "医疗门诊收费票据（电子）"),
    ("06", "44060119", "医疗门诊收费票据（电子）"),
    ("07", "44060319", "住院预交金凭证（电子）"),
    # Bills outside medical charges that a hospital also issues.
    ("09", "44030119", "行政事业单位资金往来结算票据（电子）"),
    ("10", "44040119", "公益事业捐赠票据（电子）"),
    ("11", "44010119", "非税收入一般缴款书（电子）"),
]
_NAMES = ["张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "黄敏", "赵强", "周婷", "吴军"]
_DRUGS = [("阿莫西林胶囊", "盒", 1850), ("布洛芬缓释胶囊", "盒", 2300), ("头孢克肟片", "盒", 3560)]


def demo_bill(
    seq: int,
    *,
    prefix: str = "DEMO",
    place_code: str = "001",
    bus_type: str = "02",
    rng: random.Random | None = None,
) -> BillInput:
    """One settled outpatient charge, consistent in every amount."""
    rng = rng or random.Random(seq)
    charges: list[ChargeItemInput] = []
    lists: list[ListItemInput] = []
    codes = rng.sample(CHARGE_CODES[:6], k=rng.randint(1, 4))
    for sort_no, (code, name) in enumerate(codes, start=1):
        if code == "A01":
            drug, unit, price = rng.choice(_DRUGS)
            qty = rng.randint(1, 3)
            amt = price * qty
            lists.append(
                ListItemInput(
                    sort_no=1,
                    list_code=f"Y{sort_no:04d}",
                    list_name=drug,
                    charge_code=code,
                    spec="0.25g*24",
                    unit=unit,
                    std=format_fen(price),
                    number=str(qty),
                    amt=format_fen(amt),
                )
            )
            std, number = format_fen(price), str(qty)
        else:
            amt = rng.randint(500, 30000)
            std, number, unit = format_fen(amt), "1", "次"
        charges.append(
            ChargeItemInput(
                sort_no=sort_no,
                charge_code=code,
                charge_name=name,
                unit=unit,
                std=std,
                number=number,
                amt=format_fen(amt),
            )
        )
    total = sum(int(c.amt.replace(".", "")) for c in charges)
    insured = rng.random() < 0.4
    insurance = InsuranceInput()
    if insured:
        fund = total * rng.randint(30, 70) // 100
        account = (total - fund) // 2
        own = total - fund - account
        insurance = InsuranceInput(
            fund_pay=format_fen(fund),
            account_pay=format_fen(account),
            own_pay=format_fen(own),
            self_pay=format_fen(own // 2),
            medical_insurance_id=f"M{seq:012d}",
        )
    cash = total // 3 if rng.random() < 0.3 else 0
    channels = [PayChannelInput(rng.choice(["01", "04", "05"]), format_fen(total - cash))]
    if cash:
        channels.append(PayChannelInput("02", format_fen(cash)))
    when = datetime(2026, 11, 23, 8, 0) + timedelta(seconds=seq % 36000)
    name = rng.choice(_NAMES)
    return BillInput(
        unit_code=UNIT_CODE,
        bus_no=f"{prefix}{seq:010d}",
        bus_type=bus_type,
        payer=PayerInput(
            name=name,
            payer_type="1",
            id_card_no=f"44082319{rng.randint(50, 99)}0101{seq % 10000:04d}",
            card_type="就诊卡",
            card_no=f"C{seq:08d}",
            tel=f"138{seq % 100000000:08d}",
        ),
        bus_time=when.strftime("%Y%m%d%H%M%S") + f"{seq % 1000:03d}",
        place_code=place_code,
        cashier="收费员01",
        author="收费员01",
        checker="复核员02",
        total_amount=format_fen(total),
        charge_items=tuple(charges),
        list_items=tuple(lists),
        pay_channels=tuple(channels),
        insurance=insurance,
        medical=MedicalInput(
            patient_no=f"P{seq:08d}",
            sex=rng.choice(["男", "女"]),
            age=str(rng.randint(1, 90)),
            department="内科",
            medical_institution="二级甲等",
        ),
        remark="",
    )
