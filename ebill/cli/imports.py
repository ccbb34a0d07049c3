"""`ebill import history | charges`: bring files in.

``history FILE`` imports the bills a previous system issued (JSON lines or CSV,
docs/history-import.md) straight into the database: resumable (run it again
after an interruption), a re-run of an imported file imports nothing, rejected
rows go to a report (row, column, reason).

``charges FILE`` issues one bill per row of a CSV or XLSX through a running
engine (IssueBatch over gRPC, TLS like every hop), with a result file (row,
bus_no, bill or error with its column); running the same file again issues
nothing twice.
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path
from typing import Annotated

import grpc
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from clients.credentials import Credentials, open_engine_channel, read_credentials
from config.keys import load as load_ring
from config.settings import Settings, load
from config.tls import TlsFiles
from engine.model import BillInput
from protos.ebill.v1 import issuance_pb2, issuance_pb2_grpc
from storage.db import EmbeddedPostgres, connect_pool
from usecases.bulk import Failed, Issued, IssueFn, Outcome, issue_rows, read_charges, write_results
from usecases.history import HistoryImport, file_format
from wire.bills import input_to_pb

__all__ = ["app", "grpc_issuer"]

app = typer.Typer(help="Import history bills, or issue bills from a file.", no_args_is_help=True)


def _bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=False,
    )


async def _history(
    settings: Settings, file: Path, database_url: str, operator: str, fmt: str, again: bool,
    report: Path, batch: int, workers: int,
) -> int:  # fmt: skip
    url = database_url or settings.database_url
    if not url:
        url = EmbeddedPostgres(settings.data_dir).url
    pool = await connect_pool(url, size=2, migrate=True)
    try:
        imp = HistoryImport(pool, load_ring(settings), batch=batch, workers=workers)
        with _bar() as bar:
            tasks: dict[str, object] = {}

            def tick(phase: str, done: int, total: int) -> None:
                if phase not in tasks:
                    label = "reading and checking" if phase == "stage" else "importing bills"
                    tasks[phase] = bar.add_task(label, total=total or None)
                bar.update(tasks[phase], completed=done, total=total or None)  # type: ignore[arg-type]

            res = await imp.run(file, operator=operator, fmt=fmt, again=again, progress=tick)
        rejected = await imp.report(res.job_id, report)
    finally:
        await pool.close()
    if res.already_done:
        print(
            f"{file.name} was imported before (job {res.job_id}, {res.imported_total} bills):"
            " nothing imported. --again checks every row once more."
        )
    else:
        print(
            f"job {res.job_id}{' (resumed)' if res.resumed else ''}: imported {res.imported} bills"
            f" in {res.seconds:.1f}s ({res.imported / max(res.seconds, 1e-9):,.0f} bills/s);"
            f" already on file {res.existing}, repeated rows {res.duplicates},"
            f" rejected rows {res.rejected}, number ranges into stock {res.ranges_added}"
        )
    print(f"rejected rows: {rejected} entries in {report}")
    return 1 if rejected else 0


@app.command("history")
def cmd_history(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSON lines or CSV")],
    operator: Annotated[str, typer.Option(help="who runs the import (the log's principal)")],
    database_url: Annotated[str, typer.Option(help="default EBILL_DATABASE_URL or embedded")] = "",
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv; default by extension")] = "",
    again: Annotated[bool, typer.Option(help="check an imported file's rows once more")] = False,
    report: Annotated[
        Path | None, typer.Option(help="rejected rows CSV; default FILE.rejects.csv")
    ] = None,
    batch: Annotated[int, typer.Option(help="bills per transaction")] = 20_000,
    workers: Annotated[int, typer.Option(help="processes checking rows (0: in-process)")] = 2,
) -> None:
    """Import the bills a previous system issued (history migration)."""
    if fmt and fmt not in ("jsonl", "csv"):
        raise typer.BadParameter("--format: jsonl or csv")
    out = report or file.with_name(file.name + ".rejects.csv")
    code = asyncio.run(
        _history(load(), file, database_url, operator, file_format(file, fmt), again, out,
                 batch, workers)
    )  # fmt: skip
    raise typer.Exit(code)


# gRPC codes after which the same batch is sent again (bus_no makes it safe).
_RETRY = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
          grpc.StatusCode.DEADLINE_EXCEEDED}  # fmt: skip


def grpc_issuer(stub: issuance_pb2_grpc.IssuanceServiceStub, *, attempts: int = 5) -> IssueFn:
    """An IssueFn over IssueBatch: each batch retried with jitter while the engine
    is busy or away; after that its rows fail with the reason (run the file again)."""

    async def issue(bills: list[BillInput]) -> list[Outcome]:
        req = issuance_pb2.IssueBatchRequest(bills=[input_to_pb(b) for b in bills])
        for attempt in range(attempts):
            try:
                resp = await stub.IssueBatch(req, timeout=120)
                break
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _RETRY or attempt == attempts - 1:
                    return [Failed(exc.code().name, "", str(exc.details()))] * len(bills)
                await asyncio.sleep(random.uniform(0.5, 1.5) * 2**attempt)
        out: list[Outcome] = []
        for r in resp.results:
            if r.HasField("bill"):
                out.append(
                    Issued(r.bill.bill_code, r.bill.bill_no, r.bill.check_code, r.bill.replayed)
                )
            else:
                out.append(Failed(r.error.code, r.error.field, r.error.message))
        return out

    return issue


async def _charges(
    addr: str, tls: TlsFiles | None, creds: Credentials | None, file: Path, result: Path,
    batch: int,
) -> int:  # fmt: skip
    rows = list(read_charges(file))
    # Signed as the HIS app whose credentials are given: the engine authenticates
    # and authorises every call (bill.issue within the app's unit and points).
    async with open_engine_channel(addr, tls, creds) as ch:
        issue = grpc_issuer(issuance_pb2_grpc.IssuanceServiceStub(ch))
        with _bar() as bar:
            task = bar.add_task("issuing", total=len(rows))
            results = await issue_rows(
                rows,
                issue,
                batch=batch,
                progress=lambda n: bar.advance(task, n),
            )
    write_results(result, results)
    counts = {
        k: sum(1 for r in results if r.result == k) for k in ("issued", "already issued", "error")
    }
    print(
        f"{len(results)} rows: issued {counts['issued']},"
        f" already issued {counts['already issued']}, errors {counts['error']}; results in {result}"
    )
    return 1 if counts["error"] else 0


@app.command("charges")
def cmd_charges(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or XLSX")],
    result: Annotated[
        Path | None, typer.Option(help="per-row results CSV; default FILE.results.csv")
    ] = None,
    addr: Annotated[str, typer.Option(help="engine address; default EBILL_GRPC_ADDR")] = "",
    batch: Annotated[int, typer.Option(help="bills per IssueBatch call (at most 200)")] = 200,
    credentials: Annotated[
        str,
        typer.Option(help="app credentials JSON; default <data dir>/demo-credentials.json"),
    ] = "",
) -> None:
    """Issue one bill per row of a file through the running engine (批量导入开票)."""
    from ops import pki

    if not 1 <= batch <= 200:
        raise typer.BadParameter("--batch: 1 to 200")
    settings = load()
    path = Path(credentials) if credentials else settings.data_dir / "demo-credentials.json"
    creds = read_credentials(path) if path.exists() else None
    out = result or file.with_name(file.name + ".results.csv")
    code = asyncio.run(
        _charges(addr or settings.grpc_addr, pki.client_files(settings), creds, file, out, batch)
    )
    if code:
        print("some rows were not issued: fix them and run the same file again", file=sys.stderr)
    raise typer.Exit(code)
