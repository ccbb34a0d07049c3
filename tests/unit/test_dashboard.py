"""The Grafana dashboard only charts metrics the engine exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from ops import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "ops" / "grafana" / "ebill-dashboard.json"


def exported_metrics() -> set[str]:
    """Names of every metric family ops.metrics defines (engine and inspection)."""
    exported = set()
    for name in metrics.__all__:
        obj = getattr(metrics, name)
        if isinstance(obj, MetricWrapperBase):
            for family in obj.collect():
                exported.add(family.name)
    return exported


def test_every_metric_on_the_dashboard_exists() -> None:
    exported = exported_metrics()
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    used = set()
    for panel in dash["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\bebill_[a-z_]+", target["expr"]))
    suffixes = ("_bucket", "_total", "_count", "_sum")
    missing = {
        u
        for u in used
        if u not in exported
        and not any(u.endswith(s) and u.removesuffix(s) in exported for s in suffixes)
    }
    assert used and not missing, missing
