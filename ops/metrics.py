"""Prometheus metrics of the engine process (scraped on EBILL_METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BATCH_LATENCY",
    "BATCH_SIZE",
    "BILLS",
    "FISCAL_CIRCUIT_OPEN",
    "GATEWAY_CALLS",
    "HTTP_LATENCY",
    "HTTP_REQUESTS",
    "INFLIGHT",
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
    "UNFINISHED",
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
