"""The inspection report's logic: lines, runway, rendering, and the gauges the
engine serves from the report's text file."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from engine.inspection import Check, Report, Status, at_least, at_most, runway_days
from ops import metrics

NOW = datetime(2026, 11, 23, 6, 30, tzinfo=UTC)


def report() -> Report:
    return Report(
        NOW,
        "his-db-1",
        (
            at_most(
                "Disk and tablespaces",
                "disk:data",
                "disk use of data",
                93.5,
                90,
                unit="%",
                advice="grow the volume",
            ),
            at_most("Backups", "backup_age", "age of the newest backup", 3.0, 26, unit="h"),
            at_least(
                "Stock runway",
                "runway:440823001:44060119",
                "stock lasts",
                runway_days(900, 700, 7),
                14,
                unit="days",
                advice="apply for more",
            ),
            Check("Backups", "wal_archiving", "WAL archiving", Status.WARN, detail="off"),
            Check(
                "Signing server and fiscal platform", "signer", "signer <probe>", Status.OK, 12.5
            ),
        ),
    )


def test_lines_and_runway() -> None:
    assert at_most("a", "k", "t", 89.99, 90).status is Status.OK
    assert at_most("a", "k", "t", 90, 90).status is Status.BREACH
    assert at_least("a", "k", "t", 14, 14).status is Status.OK
    assert runway_days(900, 700, 7) == 9.0
    assert math.isinf(runway_days(900, 0, 7))
    r = report()
    assert [c.key for c in r.breaches] == ["disk:data", "runway:440823001:44060119"]
    assert r.exit_code == 1
    assert r.summary() == "BREACH: 5 checks (2 ok, 1 warn, 2 breach)"
    ok = Report(NOW, "h", tuple(c for c in r.checks if c.status is not Status.BREACH))
    assert ok.exit_code == 0


def test_markdown_and_html() -> None:
    r = report()
    md = r.to_markdown()
    assert "## Needs action" in md and "- **disk use of data**: grow the volume" in md
    assert "| disk use of data | BREACH | 93.50 % | < 90 % |" in md
    html = r.to_html()
    assert "data-key='disk:data' data-status='breach'" in html
    assert "signer &lt;probe&gt;" in html  # escaped


def test_gauges_written_and_served(tmp_path: Path) -> None:
    metrics.record_inspection(report())
    path = metrics.write_inspection(tmp_path)
    served = CollectorRegistry()
    served.register(metrics.InspectionFile(path))
    text = generate_latest(served).decode()
    assert 'ebill_disk_used_percent{volume="data"} 93.5' in text
    assert 'ebill_inspection_breach{area="Disk and tablespaces",check="disk:data"} 1.0' in text
    assert 'ebill_stock_runway_days{bill_code="44060119",unit_code="440823001"} 9.0' in text
    assert "ebill_backup_age_hours 3.0" in text
    assert 'ebill_dependency_up{system="signer"} 1.0' in text
    stamp = re.search(r"^ebill_inspection_timestamp_seconds (\S+)$", text, re.M)
    assert stamp and float(stamp.group(1)) == NOW.timestamp()
    # No inspection yet: nothing served, nothing fails.
    empty = CollectorRegistry()
    empty.register(metrics.InspectionFile(tmp_path / "none.prom"))
    assert generate_latest(empty) == b""
