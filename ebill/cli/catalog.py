"""`ebill init` and `ebill catalog ...`: a real hospital's base data and certificates.

``ebill init FILE`` sets a hospital up from its base-data file (samples/hospital/
for the shape) straight in the database (``--database-url``, default
EBILL_DATABASE_URL or the embedded one), in one transaction: every problem of the
file is listed by file, row and column and nothing is written; a second run of
the same file changes nothing and says so. The ``catalog`` commands talk to a
running engine (CatalogService): list entries, the change records, a sync from
the fiscal platform, the signing certificates.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from clients._grpc import open_channel
from config.settings import load
from engine.catalog import ChangeReport
from engine.errors import EbillError
from protos.ebill.v1 import catalog_pb2, catalog_pb2_grpc, lifecycle_pb2, stock_pb2
from storage.db import EmbeddedPostgres, connect_pool
from usecases.catalog import Catalogue
from usecases.catalog_file import FileErrors, read_base_data

__all__ = ["app", "register"]

app = typer.Typer(
    help="A unit's base data and certificates on a running engine.", no_args_is_help=True
)
cert_app = typer.Typer(help="The unit's signing certificates.", no_args_is_help=True)
app.add_typer(cert_app, name="cert")
console = Console()

UnitOpt = Annotated[str, typer.Option("--unit", help="unit code")]
WhoOpt = Annotated[str, typer.Option("--operator", help="who acts (recorded)")]
AddrOpt = Annotated[str, typer.Option(help="engine address; default EBILL_GRPC_ADDR")]


def _summary(created: int, updated: int, withdrawn: int, unchanged: int) -> str:
    return f"{created} created, {updated} updated, {withdrawn} withdrawn, {unchanged} unchanged"


async def _init(path: Path, database_url: str, actor: str, dry_run: bool) -> int:
    settings = load()
    embedded = None
    url = database_url or settings.database_url
    if not url:
        embedded = EmbeddedPostgres(settings.data_dir)
        url = embedded.url
    pool = await connect_pool(url, size=1)  # migrates an empty database first
    try:
        unit_hint = await _unit_code(path)
        known = [
            r["charge_code"]
            for r in await pool.fetch(
                "SELECT charge_code FROM charge_codes WHERE unit_code = $1", unit_hint
            )
        ]
        try:
            data = read_base_data(path, known_items=known)
        except FileErrors as exc:
            table = Table("file", "row", "column", "problem", title=f"{path}: nothing written")
            for e in exc.errors:
                table.add_row(e.file, str(e.row or ""), e.column, e.message)
            console.print(table)
            return 1
        entries = len(data.ordered())
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
        ) as bar:
            task = bar.add_task(f"{data.unit.unit_code} {data.unit.unit_name}", total=entries)
            report = await Catalogue(pool).import_base_data(
                data, actor, progress=lambda n: bar.advance(task, n), dry_run=dry_run
            )
    except EbillError as exc:
        console.print(f"[red]refused, nothing written[/red]: {exc.message}")
        return 1
    finally:
        await pool.close()
        if embedded is not None:
            embedded.cleanup()
    _print_report(report, dry_run)
    return 0


async def _unit_code(path: Path) -> str:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        return str(doc["unit"]["unit_code"])
    except Exception:
        return ""  # read_base_data says what is wrong


def _print_report(report: ChangeReport, dry_run: bool) -> None:
    if not report.changed:
        console.print(
            "nothing changed: the database already holds this base data"
            f" ({report.unchanged} entries)"
        )
        return
    verb = "would change" if dry_run else "changed"
    console.print(
        f"{verb}: {_summary(report.created, report.updated, report.withdrawn, report.unchanged)}"
    )
    kinds: dict[str, int] = {}
    for c in report.changes:
        kinds[f"{c.kind.value} {c.op.value}"] = kinds.get(f"{c.kind.value} {c.op.value}", 0) + 1
    for k, n in sorted(kinds.items()):
        console.print(f"  {k}: {n}")


def cmd_init(
    file: Annotated[Path, typer.Argument(help="base-data YAML (see samples/hospital/)")],
    database_url: Annotated[str, typer.Option(help="default EBILL_DATABASE_URL")] = "",
    operator: WhoOpt = "init",
    dry_run: Annotated[bool, typer.Option(help="check and report, write nothing")] = False,
) -> None:
    """Set a real hospital up from its base-data file (idempotent, all or nothing)."""
    raise typer.Exit(asyncio.run(_init(file, database_url, operator, dry_run)))


def register(app_: typer.Typer) -> None:
    app_.command("init")(cmd_init)
    app_.add_typer(app, name="catalog")


def _op(unit: str, who: str) -> lifecycle_pb2.Operator:
    return lifecycle_pb2.Operator(unit_code=unit, operator=who)


async def _call(addr: str, method: str, request: object) -> object:
    from ops import pki

    settings = load()
    async with open_channel(addr or settings.grpc_addr, pki.client_files(settings)) as ch:
        stub = catalog_pb2_grpc.CatalogServiceStub(ch)
        return await getattr(stub, method)(request)


def _rpc(addr: str, method: str, request: object) -> object:
    import grpc

    try:
        return asyncio.run(_call(addr, method, request))
    except grpc.aio.AioRpcError as exc:
        console.print(f"[red]{exc.code().name}[/red]: {exc.details()}")
        raise typer.Exit(1) from None


def _print_changes(r: catalog_pb2.CatalogChangeReport) -> None:
    table = Table("kind", "key", "op", "before", "after")
    for c in r.changes:
        table.add_row(c.kind, c.key, c.op, c.before_json[:60], c.after_json[:60])
    console.print(table)


@app.command("sync")
def cmd_sync(unit: UnitOpt, operator: WhoOpt = "operator", addr: AddrOpt = "") -> None:
    """Sync charge items and bill codes from the fiscal platform; print what changed."""
    got = _rpc(addr, "SyncCatalog", stock_pb2.OperatorOnly(operator=_op(unit, operator)))
    assert isinstance(got, catalog_pb2.CatalogSyncReport)
    r = got.report
    console.print(
        f"platform catalogue v{got.from_version} -> v{got.to_version}: "
        + _summary(r.created, r.updated, r.withdrawn, r.unchanged)
    )
    _print_changes(r)


@app.command("list")
def cmd_list(
    kind: Annotated[str, typer.Argument(help="charge_item, mapping, issuing_point, ...")],
    unit: UnitOpt,
    addr: AddrOpt = "",
) -> None:
    """List a kind of entries of the unit."""
    got = _rpc(
        addr, "ListEntries", catalog_pb2.ListEntriesRequest(operator=_op(unit, "cli"), kind=kind)
    )
    assert isinstance(got, catalog_pb2.CatalogEntries)
    from google.protobuf.json_format import MessageToDict

    for e in got.entries:
        console.print(json.dumps(MessageToDict(e), ensure_ascii=False))


@app.command("changes")
def cmd_changes(unit: UnitOpt, addr: AddrOpt = "", limit: int = 100) -> None:
    """The unit's catalogue change records (who, when, before, after)."""
    req = catalog_pb2.ListChangesRequest(operator=_op(unit, "cli"), limit=limit)
    got = _rpc(addr, "ListChanges", req)
    assert isinstance(got, catalog_pb2.CatalogChangeReport)
    _print_changes(got)


@cert_app.command("issue")
def cmd_cert_issue(
    unit: UnitOpt,
    key_id: Annotated[str, typer.Option(help="signing server key to certify")],
    valid_days: int = 365,
    operator: WhoOpt = "operator",
    addr: AddrOpt = "",
) -> None:
    """Have the CA certify a signing-server key for the unit and register it."""
    req = catalog_pb2.IssueCertificateRequest(
        operator=_op(unit, operator), key_id=key_id, valid_days=valid_days
    )
    got = _rpc(addr, "IssueCertificate", req)
    assert isinstance(got, catalog_pb2.UnitCertificate)
    console.print(
        f"certificate {got.serial} ({got.subject}) until {got.not_after}, active={got.active}"
    )


@cert_app.command("activate")
def cmd_cert_activate(
    unit: UnitOpt, serial: str, operator: WhoOpt = "operator", addr: AddrOpt = ""
) -> None:
    """Sign the unit's new bills under this certificate (rotation)."""
    req = catalog_pb2.CertificateRef(operator=_op(unit, operator), serial=serial)
    got = _rpc(addr, "ActivateCertificate", req)
    assert isinstance(got, catalog_pb2.UnitCertificate)
    console.print(f"active: {got.serial} (key {got.key_id})")


@cert_app.command("list")
def cmd_cert_list(unit: UnitOpt, addr: AddrOpt = "") -> None:
    """The unit's certificates with the days each has left."""
    got = _rpc(addr, "ListCertificates", stock_pb2.OperatorOnly(operator=_op(unit, "cli")))
    assert isinstance(got, catalog_pb2.UnitCertificates)
    table = Table("serial", "key id", "subject", "not after", "days left", "active")
    for c in got.certificates:
        table.add_row(c.serial, c.key_id, c.subject, c.not_after, str(c.days_left), str(c.active))
    console.print(table)
