"""Prometheus metrics of the engine process (scraped on EBILL_METRICS_PORT)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, write_to_textfile
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from engine.inspection import Report, Status

__all__ = [
    "BACKUP_AGE",
    "BATCH_LATENCY",
    "BATCH_SIZE",
    "BILLS",
    "CERTIFICATE_DAYS_LEFT",
    "CERT_EXPIRY",
    "CONNECTIONS_USED",
    "DATABASE_SIZE",
    "DELIVERIES",
    "DELIVERY_PENDING",
    "DEPENDENCY_UP",
    "DISK_USED",
    "FISCAL_CIRCUIT_OPEN",
    "GATEWAY_CALLS",
    "HTTP_LATENCY",
    "HTTP_REQUESTS",
    "INFLIGHT",
    "INSPECTION_BREACH",
    "INSPECTION_FILE",
    "INSPECTION_REGISTRY",
    "INSPECTION_TIME",
    "INSPECTION_VALUE",
    "LOG_ERRORS",
    "OLDEST_UNFINISHED",
    "OVERLOAD_REFUSED",
    "QUEUE_DEPTH",
    "RECOVERED",
    "RECOVERY_QUARANTINED",
    "RPCS",
    "RPC_LATENCY",
    "STAGE_BATCHES",
    "STAGE_BUSY",
    "STAGE_ITEMS",
    "STAGE_LATENCY",
    "STAGE_REPLICAS",
    "STOCK_ALERTS_MAILED",
    "STOCK_ALERTS_UNREAD",
    "STOCK_AVAILABLE",
    "STOCK_RUNWAY",
    "UNFINISHED",
    "InspectionFile",
    "record_inspection",
    "write_inspection",
]

_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.2, 0.5, 1, 2, 5, 10)

RPCS = Counter("ebill_rpc_total", "gRPC calls by method and status code", ["method", "code"])
RPC_LATENCY = Histogram(
    "ebill_rpc_seconds", "gRPC call latency", ["method"], buckets=_LATENCY_BUCKETS
)
BILLS = Counter("ebill_bills_total", "Bill outcomes by status or error code", ["outcome"])
BATCH_SIZE = Histogram(
    "ebill_batch_size", "Bills per pipeline batch", buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500)
)
BATCH_LATENCY = Histogram(
    "ebill_batch_seconds", "Time of one batch through all stages", buckets=_LATENCY_BUCKETS
)
# Summed over both issuance lanes and the red-flush batcher (no lane label: one
# series, as the dashboard and the overload test read it).
QUEUE_DEPTH = Gauge("ebill_queue_depth", "Bills waiting for a pipeline batch, all batchers")
OVERLOAD_REFUSED = Counter(
    "ebill_overload_refused_total",
    "Issuing and red-flush calls refused at once because their batcher's queue was full",
)
INFLIGHT = Gauge("ebill_inflight_batches", "Batches in the pipeline")
STAGE_ITEMS = Counter("ebill_stage_items_total", "Bills processed by a stage", ["stage"])
STAGE_BATCHES = Counter("ebill_stage_batches_total", "Batches processed by a stage", ["stage"])
STAGE_BUSY = Counter("ebill_stage_busy_seconds_total", "Time a stage spent on batches", ["stage"])
STAGE_LATENCY = Histogram(
    "ebill_stage_seconds", "Time of one batch in one stage", ["stage"], buckets=_LATENCY_BUCKETS
)
# Onboarding: days until each unit's active signing certificate expires (alert
# well before 0: a unit without a valid certificate cannot issue).
CERTIFICATE_DAYS_LEFT = Gauge(
    "ebill_certificate_days_left",
    "Days until the unit's active signing certificate expires",
    ["unit"],
)
STOCK_ALERTS_UNREAD = Gauge(
    "ebill_stock_alerts_unread",
    "Low-stock warnings not yet read by the bill office",
    ["unit_code", "place_code", "bill_code"],
)
STOCK_ALERTS_MAILED = Counter(
    "ebill_stock_alerts_mailed",
    "Low-stock warning emails by outcome (sent, failed, reclaimed: a lapsed claim taken over)",
    ["outcome"],
)
STOCK_AVAILABLE = Gauge(
    "ebill_stock_available",
    "Bill numbers left in enabled segments",
    ["unit_code", "place_code", "bill_code"],
)

UNFINISHED = Gauge(
    "ebill_unfinished_bills",
    "Bills in the outbox by status (reserved, pending_countersign)",
    ["status"],
)
OLDEST_UNFINISHED = Gauge("ebill_oldest_unfinished_seconds", "Age of the oldest unfinished bill")
FISCAL_CIRCUIT_OPEN = Gauge(
    "ebill_fiscal_circuit_open", "1 while the fiscal circuit breaker is open"
)
RECOVERED = Counter("ebill_recovered_total", "Bills finished by the recovery loop", ["outcome"])
RECOVERY_QUARANTINED = Counter(
    "ebill_recovery_quarantined",
    "Items the recovery loop set aside instead of retrying forever (see GetBacklog)",
    ["kind"],
)

STAGE_REPLICAS = Gauge("ebill_stage_replicas", "Stage actors per Ray node", ["stage", "node"])


# --- Inspection (`ebill inspect`, usecases.inspection). Set in the inspecting
# process, in a registry of their own, written as a Prometheus text file beside
# the reports; the engine serves the file's latest figures on its own /metrics
# (InspectionFile), so alert rules see them with one scrape. node_exporter's
# textfile collector can read the same file.
INSPECTION_REGISTRY = CollectorRegistry(auto_describe=True)
INSPECTION_FILE = "ebill_inspection.prom"
INSPECTION_TIME = Gauge(
    "ebill_inspection_timestamp_seconds",
    "When the last inspection ran (Unix time)",
    registry=INSPECTION_REGISTRY,
)
INSPECTION_BREACH = Gauge(
    "ebill_inspection_breach",
    "1 when a check of the last inspection was past its line",
    ["area", "check"],
    registry=INSPECTION_REGISTRY,
)
INSPECTION_VALUE = Gauge(
    "ebill_inspection_value",
    "The figure of each check of the last inspection (its unit is the check's)",
    ["check"],
    registry=INSPECTION_REGISTRY,
)
DISK_USED = Gauge(
    "ebill_disk_used_percent",
    "Use of each volume the system writes to (data, database, backups, tablespaces)",
    ["volume"],
    registry=INSPECTION_REGISTRY,
)
DATABASE_SIZE = Gauge(
    "ebill_database_size_bytes", "Size of the database", registry=INSPECTION_REGISTRY
)
CONNECTIONS_USED = Gauge(
    "ebill_database_connections_used_percent",
    "Connections in use of max_connections",
    registry=INSPECTION_REGISTRY,
)
BACKUP_AGE = Gauge(
    "ebill_backup_age_hours",
    "Age of the newest backup (+Inf: none)",
    registry=INSPECTION_REGISTRY,
)
LOG_ERRORS = Gauge(
    "ebill_log_errors",
    "ERROR lines in the logs since the inspection before",
    registry=INSPECTION_REGISTRY,
)
CERT_EXPIRY = Gauge(
    "ebill_cert_expiry_days",
    "Days until a certificate (TLS, the signing key's) expires",
    ["check"],
    registry=INSPECTION_REGISTRY,
)
STOCK_RUNWAY = Gauge(
    "ebill_stock_runway_days",
    "Days the numbers left last at the last week's issuance rate (+Inf: none issued)",
    ["unit_code", "bill_code"],
    registry=INSPECTION_REGISTRY,
)
DEPENDENCY_UP = Gauge(
    "ebill_dependency_up",
    "1 when the signing server or fiscal platform answered the inspection's probe",
    ["system"],
    registry=INSPECTION_REGISTRY,
)


def record_inspection(report: Report) -> None:
    """Set the inspection gauges from ``report`` (cleared first: a volume or
    bill code gone from the report is gone from the gauges)."""
    for gauge in (INSPECTION_BREACH, INSPECTION_VALUE, DISK_USED, CERT_EXPIRY, STOCK_RUNWAY):
        gauge.clear()
    INSPECTION_TIME.set(report.at.timestamp())
    for c in report.checks:
        INSPECTION_BREACH.labels(c.area, c.key).set(1 if c.status is Status.BREACH else 0)
        if c.value is not None:
            INSPECTION_VALUE.labels(c.key).set(c.value)
        kind, _, rest = c.key.partition(":")
        if kind == "disk" and c.value is not None:
            DISK_USED.labels(rest).set(c.value)
        elif kind == "cert" and c.value is not None:
            CERT_EXPIRY.labels(rest).set(c.value)
        elif kind == "runway" and c.value is not None:
            unit, _, bill_code = rest.partition(":")
            STOCK_RUNWAY.labels(unit, bill_code).set(c.value)
        elif kind == "db_size" and c.value is not None:
            DATABASE_SIZE.set(c.value)
        elif kind == "connections" and c.value is not None:
            CONNECTIONS_USED.set(c.value)
        elif kind == "backup_age":
            BACKUP_AGE.set(c.value if c.value is not None else math.inf)
        elif kind == "log_errors" and c.value is not None:
            LOG_ERRORS.set(c.value)
        elif kind in ("signer", "platform"):
            DEPENDENCY_UP.labels(kind).set(1 if c.status is Status.OK else 0)


def write_inspection(directory: Path) -> Path:
    """Write the inspection gauges to ``directory``/ebill_inspection.prom (atomically)."""
    path = directory / INSPECTION_FILE
    write_to_textfile(str(path), INSPECTION_REGISTRY)
    return path


class InspectionFile(Collector):
    """Serves the figures of the last inspection (its text file) on the engine's
    /metrics; nothing while no inspection has run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterator[Metric]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError:
            return
        yield from text_string_to_metric_families(text)


# Delivery to payers (issue #15): every try by channel and outcome (sent, retry,
# failed, skipped), and the jobs waiting.
DELIVERIES = Counter(
    "ebill_deliveries_total", "Delivery tries by channel and outcome", ["channel", "outcome"]
)
DELIVERY_PENDING = Gauge("ebill_delivery_pending", "Delivery jobs waiting to be sent")
# The HTTP server (ebill/http/): every request by route and status, and the
# vendor gateway's calls by interface and the vendor result code it answered.
HTTP_REQUESTS = Counter(
    "ebill_http_requests_total", "HTTP requests by route and status", ["route", "status"]
)
HTTP_LATENCY = Histogram(
    "ebill_http_seconds", "HTTP request latency", ["route"], buckets=_LATENCY_BUCKETS
)
GATEWAY_CALLS = Counter(
    "ebill_gateway_calls_total",
    "Vendor-interface calls by interface and result code",
    ["method", "result"],
)
