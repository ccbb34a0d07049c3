"""The engine's gRPC server: IssuanceService for the HIS, health, reflection, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

import asyncpg
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, start_http_server

from actors.pipeline import Pipeline, PipelineConfig, init_ray
from config.settings import Settings
from ebill.batcher import MicroBatcher, Outcome
from ebill.convert import bill_to_pb, status_to_pb, work_to_pb
from ebill.grpc.stock import StockServicer
from ebill.lifecycle import LifecycleServicer
from ebill.rpc import bill_key, code8, digits, final, observed, prefixed
from engine.errors import DeadlineExceeded, EbillError, InvalidArgument, NotFound
from engine.model import BillStatus, IssuedBill
from engine.pipeline import Work
from ops import metrics
from protos.ebill.v1 import (
    bill_pb2,
    issuance_pb2,
    issuance_pb2_grpc,
    lifecycle_pb2,
    lifecycle_pb2_grpc,
    stock_pb2,
    stock_pb2_grpc,
)
from storage import bills as bill_store
from storage.alerts import unread_alerts
from storage.catalog import stock_available
from storage.db import EmbeddedPostgres, connect_pool
from storage.offline import link_back_issued, record_offline, waiting_offline
from usecases.stock.loop import stock_loop

__all__ = ["MAX_BATCH", "IssuanceServicer", "serve"]

log = logging.getLogger(__name__)

MAX_BATCH = 200
SERVICE_NAME = "ebill.v1.IssuanceService"


class IssuanceServicer(issuance_pb2_grpc.IssuanceServiceServicer):
    def __init__(
        self,
        batcher: MicroBatcher[bytes],
        pool: asyncpg.Pool,
        pipeline: Pipeline,
        timeout_s: float,
    ) -> None:
        self._batcher = batcher
        self._pool = pool
        self._pipeline = pipeline
        self._timeout = timeout_s

    async def _issue(self, raws: list[bytes]) -> list[Outcome]:
        try:
            return await asyncio.wait_for(self._batcher.submit(raws), self._timeout)
        except TimeoutError:
            raise DeadlineExceeded(
                f"no answer from the pipeline within {self._timeout:g}s; the bills may still be "
                "issued: send the same request (same bus_no) again to get them"
            ) from None

    @observed
    async def RecordOfflineBill(
        self, request: issuance_pb2.RecordOfflineBillRequest, context: grpc.aio.ServicerContext
    ) -> issuance_pb2.RecordOfflineBillResponse:
        if not request.HasField("bill"):
            raise InvalidArgument("bill: is required", field="bill")
        code8(request.paper_code, "paper_code")
        digits(request.paper_no, 10, "paper_no")
        if not request.operator.strip():
            raise InvalidArgument("operator: is required", field="operator")
        raw = request.bill.SerializeToString()
        (checked,) = await self._pipeline.validate([raw])
        if isinstance(checked, EbillError):
            raise prefixed(checked, "bill")
        offline_id = await record_offline(
            self._pool,
            unit_code=request.bill.unit_code,
            bus_no=request.bill.bus_no,
            place_code=request.bill.place_code,
            paper_code=request.paper_code,
            paper_no=request.paper_no,
            operator=request.operator,
            request=raw,
        )
        return issuance_pb2.RecordOfflineBillResponse(offline_id=offline_id)

    @observed
    async def GetBacklog(
        self, request: issuance_pb2.GetBacklogRequest, context: grpc.aio.ServicerContext
    ) -> issuance_pb2.Backlog:
        b = await bill_store.backlog(self._pool)
        return issuance_pb2.Backlog(
            reserved=int(b["reserved"]),
            pending_countersign=int(b["pending_countersign"]),
            oldest_unfinished_s=b["oldest_s"],
            max_attempts=int(b["max_attempts"]),
            fiscal_circuit_open=await self._pipeline.fiscal_circuit_open(),
        )

    @observed
    async def IssueBill(
        self, request: issuance_pb2.IssueBillRequest, context: grpc.aio.ServicerContext
    ) -> issuance_pb2.IssueBillResponse:
        if not request.HasField("bill"):
            raise InvalidArgument("bill: is required", field="bill")
        (outcome,) = await self._issue([request.bill.SerializeToString()])
        err = final(outcome)
        _count(outcome, err)
        if err is not None:
            raise prefixed(err, "bill")
        assert not isinstance(outcome, EbillError)
        return issuance_pb2.IssueBillResponse(bill=work_to_pb(outcome))

    @observed
    async def IssueBatch(
        self, request: issuance_pb2.IssueBatchRequest, context: grpc.aio.ServicerContext
    ) -> issuance_pb2.IssueBatchResponse:
        if not request.bills:
            raise InvalidArgument("bills: at least one bill is required", field="bills")
        if len(request.bills) > MAX_BATCH:
            raise InvalidArgument(
                f"bills: at most {MAX_BATCH} bills per call, got {len(request.bills)}",
                field="bills",
            )
        outcomes = await self._issue([b.SerializeToString() for b in request.bills])
        results = []
        for i, (src, outcome) in enumerate(zip(request.bills, outcomes, strict=True)):
            err = final(outcome)
            _count(outcome, err)
            item = issuance_pb2.ItemResult(index=i, bus_no=src.bus_no)
            if err is not None:
                e = prefixed(err, f"bills[{i}]")
                item.error.CopyFrom(
                    issuance_pb2.ItemError(code=e.code, message=e.message, field=e.field)
                )
            else:
                assert not isinstance(outcome, EbillError)
                item.bill.CopyFrom(work_to_pb(outcome))
            results.append(item)
        return issuance_pb2.IssueBatchResponse(results=results)

    async def _lookup(self, request: issuance_pb2.GetBillRequest) -> IssuedBill:
        key = bill_key(request)
        bill = await bill_store.get_bill(self._pool, key)
        if bill is None:
            raise NotFound(f"no {key.describe()}")
        return bill

    @observed
    async def GetBill(
        self, request: issuance_pb2.GetBillRequest, context: grpc.aio.ServicerContext
    ) -> bill_pb2.IssuedBill:
        return bill_to_pb(await self._lookup(request))

    @observed
    async def GetBillStatus(
        self, request: issuance_pb2.GetBillRequest, context: grpc.aio.ServicerContext
    ) -> issuance_pb2.BillStatusResponse:
        bill = await self._lookup(request)
        return issuance_pb2.BillStatusResponse(
            bill_code=bill.bill_code,
            bill_no=bill.bill_no,
            bus_no=bill.bus_no,
            status=status_to_pb(bill.status),
            printed_to_paper=bill.paper_status == "printed",
            red_flushed=bill.status.value == "red_flushed",
        )


def _count(outcome: Outcome, err: EbillError | None) -> None:
    if err is not None:
        metrics.BILLS.labels(err.code).inc()
    elif not isinstance(outcome, EbillError):
        metrics.BILLS.labels(outcome.status.value).inc()


async def _poll_stats(pipeline: Pipeline, pool: asyncpg.Pool, interval_s: float) -> None:
    """Bring what the stage actors counted into this process's Prometheus registry."""
    seen: dict[tuple[str, str], float] = {}

    def advance(counter: Counter, stage: str, key: str, total: float) -> None:
        # Stage totals are cumulative; counters take the increase since last time.
        delta = total - seen.get((stage, key), 0.0)
        if delta > 0:
            counter.labels(stage).inc(delta)
        seen[(stage, key)] = total

    while True:
        try:
            stats = await pipeline.stats()
            for stage, replicas in stats.items():
                advance(metrics.STAGE_ITEMS, stage, "items", sum(r["items"] for r in replicas))
                advance(
                    metrics.STAGE_BATCHES, stage, "batches", sum(r["batches"] for r in replicas)
                )
                advance(metrics.STAGE_BUSY, stage, "busy", sum(r["busy_s"] for r in replicas))
            for stage, durations in (await pipeline.drain_durations()).items():
                for d in durations:
                    metrics.STAGE_LATENCY.labels(stage).observe(d)
            for unit, place, bill_code, left in await stock_available(pool):
                metrics.STOCK_AVAILABLE.labels(unit, place, bill_code).set(left)
            metrics.STOCK_ALERTS_UNREAD.clear()
            for unit, place, bill_code, n in await unread_alerts(pool):
                metrics.STOCK_ALERTS_UNREAD.labels(unit, place, bill_code).set(n)
            metrics.FISCAL_CIRCUIT_OPEN.set(
                max(r.get("circuit_open", 0.0) for r in stats["countersign"])
            )
            b = await bill_store.backlog(pool)
            metrics.UNFINISHED.labels("reserved").set(b["reserved"])
            metrics.UNFINISHED.labels("pending_countersign").set(b["pending_countersign"])
            metrics.OLDEST_UNFINISHED.set(b["oldest_s"])
        except Exception:  # metrics must never take the server down
            log.exception("cannot read stats")
        await asyncio.sleep(interval_s)


async def back_issue_offline(pipeline: Pipeline, pool: asyncpg.Pool, limit: int) -> int:
    """Issue the e-bills of offline paper bills (补开) and link them; returns how many.

    Waits while the fiscal circuit is open: the platform being back is the point.
    A bill that then cannot be countersigned is finished by the outbox as usual.
    """
    waiting = await waiting_offline(pool, limit)
    if not waiting or await pipeline.fiscal_circuit_open():
        return 0
    outcomes = await pipeline.issue([raw for _, raw in waiting])
    links = [
        (offline_id, out.bill_id)
        for (offline_id, _), out in zip(waiting, outcomes, strict=True)
        if isinstance(out, Work) and out.status is not BillStatus.RESERVED
    ]
    await link_back_issued(pool, links)
    if links:
        log.info("back-issued %d offline bills", len(links))
    return len(links)


async def _recover_forever(pipeline: Pipeline, pool: asyncpg.Pool, settings: Settings) -> None:
    """Finish what the outbox says is due: bills whose batch died with an engine,
    bills the fiscal platform could not take. Runs beside issuance, in batches."""
    while True:
        try:
            await back_issue_offline(pipeline, pool, settings.recovery_batch)
            works = await bill_store.claim_due(pool, settings.recovery_batch)
            if works:
                items = await pipeline.recover(works)
                done = sum(
                    1 for it in items if isinstance(it, Work) and it.status is BillStatus.ISSUED
                )
                metrics.RECOVERED.labels("issued").inc(done)
                metrics.RECOVERED.labels("unfinished").inc(len(items) - done)
                log.info("recovery: %d of %d bills finished", done, len(items))
                if len(works) == settings.recovery_batch:
                    continue  # more are due: no pause
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("recovery pass failed")
        await asyncio.sleep(settings.recovery_interval_s)


async def serve(settings: Settings, *, ready: Callable[[], None] | None = None) -> None:
    """Run the engine until SIGTERM or SIGINT."""
    embedded = None
    url = settings.database_url
    if not url:
        embedded = EmbeddedPostgres(settings.data_dir)
        url = embedded.url
        log.info("embedded PostgreSQL at %s", url)
    pool = await connect_pool(url, size=settings.db_pool_size)
    init_ray(settings.ray_address, settings.ray_num_cpus)
    pipeline = Pipeline(
        PipelineConfig(
            database_url=url,
            signer_addr=settings.signer_addr,
            signer_key_id=settings.signer_key_id,
            fiscal_addr=settings.fiscal_addr,
            verify_fiscal=settings.verify_fiscal,
            fiscal_timeout_s=settings.fiscal_timeout_s,
            outbox_grace_s=settings.outbox_grace_s,
            replicas=settings.stage_replicas,
        )
    )
    batcher = MicroBatcher(
        pipeline.issue,
        max_batch=settings.batch_max,
        linger_s=settings.batch_linger_ms / 1000,
        max_inflight=settings.max_inflight_batches,
    )
    batcher.start()

    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", 32 * 1024 * 1024),
            ("grpc.max_send_message_length", 32 * 1024 * 1024),
        ]
    )
    issuance_pb2_grpc.add_IssuanceServiceServicer_to_server(
        IssuanceServicer(batcher, pool, pipeline, settings.rpc_timeout_s), server
    )
    lifecycle = LifecycleServicer(
        pool, pipeline, settings.rpc_timeout_s, linger_s=settings.batch_linger_ms / 1000
    )
    lifecycle.start()
    lifecycle_pb2_grpc.add_LifecycleServiceServicer_to_server(lifecycle, server)
    stock_pb2_grpc.add_StockServiceServicer_to_server(StockServicer(pool, settings), server)
    health_servicer = health.aio.HealthServicer()
    # The servicer calls the server SERVING from the start; not until the
    # pipeline is warm, or load balancers send bills to an engine not ready.
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (
            issuance_pb2.DESCRIPTOR.services_by_name["IssuanceService"].full_name,
            lifecycle_pb2.DESCRIPTOR.services_by_name["LifecycleService"].full_name,
            stock_pb2.DESCRIPTOR.services_by_name["StockService"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    if server.add_insecure_port(settings.grpc_addr) == 0:
        raise SystemExit(f"cannot listen on {settings.grpc_addr}")
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr="127.0.0.1")
    await server.start()
    # Warm the pipeline: the first batch pays for actor start-up and connections.
    await pipeline.warm()
    for stage, nodes in (await pipeline.placement()).items():
        for node in nodes:
            metrics.STAGE_REPLICAS.labels(stage, node).inc()
        log.info("stage %s replicas on nodes %s", stage, nodes)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    background = [
        asyncio.create_task(_poll_stats(pipeline, pool, 2.0)),
        asyncio.create_task(_recover_forever(pipeline, pool, settings)),
        asyncio.create_task(stock_loop(pool, settings)),
    ]
    log.info("engine serving on %s (metrics :%s)", settings.grpc_addr, settings.metrics_port)
    print(f"engine ready on {settings.grpc_addr}", flush=True)
    if ready:
        ready()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.stop(grace=5)
    for task in background:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await batcher.stop()
    await lifecycle.stop()
    await pool.close()
    if embedded is not None:
        embedded.cleanup()
