"""Tuning constants, in one module.

Settings (config.settings) are what an operator sets per deployment through EBILL_*
variables; these are the engineering choices behind them, changed only with a
measurement or an incident to justify it. Every value says why it is what it is.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BULK_COUNTERSIGN_INFLIGHT",
    "DB_ATTEMPTS",
    "DB_RETRY_FACTOR",
    "DB_RETRY_FIRST_DELAY_S",
    "ENGINE_MAX_MESSAGE_BYTES",
    "FISCAL_ADMIN_TIMEOUT_S",
    "GRPC_KEEPALIVE_PERMIT_WITHOUT_CALLS",
    "GRPC_KEEPALIVE_TIMEOUT_MS",
    "GRPC_KEEPALIVE_TIME_MS",
    "GRPC_MAX_MESSAGE_BYTES",
    "GRPC_MAX_RECONNECT_BACKOFF_MS",
    "GRPC_MIN_RECONNECT_BACKOFF_MS",
    "KEY_FETCH_TIMEOUT_S",
    "LIST_DEFAULT_PAGE",
    "LIST_MAX_PAGE",
    "MAX_BATCH",
    "MAX_ERROR_MESSAGE_CHARS",
    "MAX_FIELD_VIOLATIONS",
    "MAX_PAPER_RANGE",
    "OVERLOAD_RETRY_S",
    "RED_MAX_BATCH",
    "RED_MAX_INFLIGHT",
    "RETRY_ATTEMPTS",
    "RETRY_INITIAL_BACKOFF_S",
    "RETRY_MAX_BACKOFF_S",
    "RETRY_MULTIPLIER",
    "SERVER_KEEPALIVE_TIMEOUT_MS",
    "SERVER_KEEPALIVE_TIME_MS",
    "SERVER_MAX_CONNECTION_IDLE_MS",
    "SERVER_MIN_PING_INTERVAL_MS",
    "SIGNER_TIMEOUT_S",
    "SMTP_TIMEOUT_S",
    "STATS_INTERVAL_S",
]

# -- pipeline stages -------------------------------------------------------------

# A whole-transaction database step is tried this many times when the failure left
# nothing written (connection loss, serialization failure), waiting
# DB_RETRY_FIRST_DELAY_S, then that times DB_RETRY_FACTOR, ... in between.
DB_ATTEMPTS: Final = 4
DB_RETRY_FIRST_DELAY_S: Final = 0.05
DB_RETRY_FACTOR: Final = 4.0

# Bulk batches (IssueBatch) at the fiscal platform at once, per engine. The platform
# (the sandbox: under one lock) works through its calls in turn, so bulk batches sent
# early only wait there, and a window's bill behind them waited for all (single p50
# 739 ms, p99 1623 ms beside saturating batch work); held back in the engine until one
# returns, the window's bill overtakes them (p50 331 ms, p99 655 ms in the same
# sweep; batch beside the single bills 12.8% below batch alone there, 3.3% without
# the gate: runs on this shared machine differ by about that much). One keeps the
# sandbox busy: the next bulk batch is signed and waiting when one returns. A
# platform serving calls in parallel at a distance wants more.
BULK_COUNTERSIGN_INFLIGHT: Final = 1

# -- gRPC channels to the signer and the fiscal platform ---------------------------

# gRPC's default reconnect backoff grows to two minutes; after a network blip the
# signer and the platform must be tried again within a second or two.
GRPC_MIN_RECONNECT_BACKOFF_MS: Final = 100
GRPC_MAX_RECONNECT_BACKOFF_MS: Final = 2000
# A batch of a few thousand bills with their canonical bytes exceeds the 4 MiB default.
GRPC_MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
# Keepalive pings notice a connection that died silently (a NAT or firewall dropped
# it) while a call waits on it, instead of waiting out the deadline. Only while
# calls are in flight: servers answer pings on idle connections more often than
# every 5 minutes with GOAWAY "too_many_pings" (gRPC's default server policy).
GRPC_KEEPALIVE_TIME_MS: Final = 30_000
GRPC_KEEPALIVE_TIMEOUT_MS: Final = 10_000
GRPC_KEEPALIVE_PERMIT_WITHOUT_CALLS: Final = False

# -- client deadlines and retries ---------------------------------------------------

# Signing a batch on the HSM; a stage passes its own (settings) where it has one.
SIGNER_TIMEOUT_S: Final = 10.0
# Public keys are fetched once per process; a slow answer is worth waiting for.
KEY_FETCH_TIMEOUT_S: Final = 10.0
# Administrative calls to the platform (grants, returns, write-offs, audits,
# registration): an operator is waiting, but not a patient at a till.
FISCAL_ADMIN_TIMEOUT_S: Final = 10.0
# Idempotent calls that fail with UNAVAILABLE are tried up to RETRY_ATTEMPTS times
# in all, within the call's one deadline, sleeping a random time in
# [0, min(RETRY_MAX_BACKOFF_S, RETRY_INITIAL_BACKOFF_S * RETRY_MULTIPLIER**n)]
# ("full jitter") so that stages recovering together do not hit the server in step.
RETRY_ATTEMPTS: Final = 3
RETRY_INITIAL_BACKOFF_S: Final = 0.1
RETRY_MULTIPLIER: Final = 2.0
RETRY_MAX_BACKOFF_S: Final = 1.0

# -- mail ------------------------------------------------------------------------

# Connecting to and talking with the SMTP server (low-stock warnings).
SMTP_TIMEOUT_S: Final = 10.0

# -- the engine's own API ------------------------------------------------------------

# Bills per IssueBatch call: a batch of 200 fills one pipeline batch (EBILL_BATCH_MAX's
# default) and its answer stays well under the message limit below.
MAX_BATCH: Final = 200
# What the engine's server accepts and sends: a full IssueBatch answer carries every
# bill's canonical bytes and signatures, above gRPC's 4 MiB default.
ENGINE_MAX_MESSAGE_BYTES: Final = 32 * 1024 * 1024
# ListBills pages: a window's screen wants about a hundred; five hundred bounds one
# query and one answer.
LIST_DEFAULT_PAGE: Final = 100
LIST_MAX_PAGE: Final = 500
# Blank paper received or voided in one call: a year's paper of a large hospital,
# and a bound on the rows one call writes.
MAX_PAPER_RANGE: Final = 1_000_000
# Red-flushes from many windows share pipeline batches (a second micro-batcher);
# two in flight leave the issuance batcher the larger share of the pipeline.
RED_MAX_BATCH: Final = 200
RED_MAX_INFLIGHT: Final = 2
# A call refused because the issuance queue is full (EBILL_QUEUE_MAX) is told to come
# back after this long (google.rpc.RetryInfo): about one pipeline batch's time, so the
# retry finds the queue drained by a batch rather than hammering it at once.
OVERLOAD_RETRY_S: Final = 0.2
# Errors travel in trailing metadata, which clients refuse past 8-16 KiB (gRPC's
# default limits): one message or violation is cut at this many characters (they
# quote values short anyway), and a BadRequest lists at most this many violations
# (a cashier fixes the first few; the count of the rest is given).
MAX_ERROR_MESSAGE_CHARS: Final = 200
MAX_FIELD_VIOLATIONS: Final = 10
# The engine's server: it pings a HIS connection with calls in flight every
# SERVER_KEEPALIVE_TIME_MS and drops it if unanswered within SERVER_KEEPALIVE_TIMEOUT_MS,
# so a call whose client vanished (a till switched off, a NAT that forgot the flow)
# stops holding a slot; pings continue while a long IssueBatch sends no data.
# Only with calls in flight (as our own clients: GRPC_KEEPALIVE_PERMIT_WITHOUT_CALLS).
SERVER_KEEPALIVE_TIME_MS: Final = 60_000
SERVER_KEEPALIVE_TIMEOUT_MS: Final = 20_000
# Clients that ping (ours every GRPC_KEEPALIVE_TIME_MS = 30 s) are accepted down to
# this interval; below it gRPC's server answers GOAWAY "too_many_pings". Kept under
# the clients' own interval so a HIS set up like our clients is never cut off.
SERVER_MIN_PING_INTERVAL_MS: Final = 10_000
# A connection without calls this long is closed gracefully (GOAWAY); its client
# reconnects on its next call. Bounds what idle tills hold on the server.
SERVER_MAX_CONNECTION_IDLE_MS: Final = 10 * 60_000
# How often stage counters, stock and backlog gauges are brought into Prometheus:
# under a scrape interval, cheap next to issuance.
STATS_INTERVAL_S: Final = 2.0
