"""History files for tests and the benchmark: bills a previous system issued.

`python -m bench.history_data OUT.jsonl --bills N` writes N bills of the demo
hospital as the previous system would export them (docs/history-import.md):
numbers of an old bill code in runs per issuing point, every 50th bill
red-flushed with its red bill after it, some with the previous system's
signatures (opaque base64). Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from engine.lifecycle import negate_amount
from engine.model import CST
from engine.serde import input_to_dict
from usecases import demo

__all__ = ["OLD_BILL_CODE", "history_rows", "red_row", "write_jsonl"]

# A bill code the previous system issued outpatient bills on (not one the
# sandbox platform grants: it knows nothing of the old system's bills).
OLD_BILL_CODE = "44060118"
_PLACES = ("001", "002", "003")
_INSURANCE_AMOUNTS = ("fund_pay", "other_fund_pay", "account_pay", "own_pay", "self_pay")


def red_row(original: dict[str, Any], bus_no: str, check_code: str, bill_no: str) -> dict[str, Any]:
    """The red bill of ``original`` as the previous system exported it."""
    bill = dict(original["bill"])
    bill["bus_no"] = bus_no
    bill["total_amount"] = negate_amount(bill["total_amount"])
    bill["charge_items"] = [
        {
            **c,
            "amt": negate_amount(c["amt"]),
            "self_amt": negate_amount(c["self_amt"]) if c["self_amt"] else "",
        }
        for c in bill["charge_items"]
    ]
    bill["list_items"] = [
        {
            **li,
            "amt": negate_amount(li["amt"]),
            "self_amt": negate_amount(li["self_amt"]) if li["self_amt"] else "",
        }
        for li in bill["list_items"]
    ]
    bill["pay_channels"] = [
        {**p, "amount": negate_amount(p["amount"])} for p in bill["pay_channels"]
    ]
    bill["insurance"] = {
        k: negate_amount(v) if k in _INSURANCE_AMOUNTS and v else v
        for k, v in bill["insurance"].items()
    }
    bill["remark"] = "退费冲红"
    return {
        "bill_code": original["bill_code"],
        "bill_no": bill_no,
        "check_code": check_code,
        "issued_at": original["issued_at"],
        "status": "issued",
        "red_of": {
            "bill_code": original["bill_code"],
            "bill_no": original["bill_no"],
            "check_code": original["check_code"],
        },
        "bill": bill,
    }


def history_rows(
    n: int, *, seed: int = 7, bill_code: str = OLD_BILL_CODE, first_no: int = 1,
    prefix: str = "H", unit_code: str = demo.UNIT_CODE,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """``n`` rows (red bills included in the count), numbers from ``first_no`` on."""
    rng = random.Random(seed)
    start = datetime(2025, 1, 1, 8, 0, tzinfo=CST)
    no = first_no
    made = 0
    while made < n:
        place = _PLACES[(made // 1000) % len(_PLACES)]
        b = demo.demo_bill(
            made, prefix=prefix, place_code=place, rng=random.Random(seed * 1_000_003 + made)
        )
        if b.unit_code != unit_code:
            b = replace(b, unit_code=unit_code)
        at = start + timedelta(seconds=made * 7)
        row: dict[str, Any] = {
            "bill_code": bill_code,
            "bill_no": f"{no:010d}",
            "check_code": f"{rng.getrandbits(24):06x}",
            "issued_at": at.isoformat(timespec="seconds"),
            "status": "issued",
            "bill": input_to_dict(b),
        }
        if made % 10 == 0:
            row["unit_signature"] = base64.b64encode(rng.randbytes(64)).decode()
            row["fiscal_signature"] = base64.b64encode(rng.randbytes(64)).decode()
        no += 1
        made += 1
        if made % 50 == 0 and made < n:
            row["status"] = "red_flushed"
            yield row
            yield red_row(row, f"{b.bus_no}R", f"{rng.getrandbits(24):06x}", f"{no:010d}")
            no += 1
            made += 1
            continue
        yield row


def write_jsonl(path: Path, rows: Iterator[dict[str, Any]]) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
            f.write("\n")
            count += 1
    return count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--bills", type=int, default=1000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--first-no", type=int, default=1)
    a = p.parse_args()
    print(write_jsonl(a.out, history_rows(a.bills, seed=a.seed, first_no=a.first_no)), "rows")


if __name__ == "__main__":
    main()
