"""`ebill`: the operator's command line.

One module per group of commands, each registering itself here: ``core`` (serve,
run, issue, the sandboxes), ``audit`` (the transparency log offline), ``keys``
(the data key ring of personal data at rest), ``identity`` (staff and applications
offline). A new group
is a module with a ``typer.Typer`` (or a ``register(app)``) and one line below.
typer because its commands are typed functions whose options document
themselves; rich (which typer uses) draws progress bars for long work.
"""

from __future__ import annotations

import logging

import typer

from ebill.cli import audit, core, identity, keys, verify

__all__ = ["app", "main"]

app = typer.Typer(
    name="ebill",
    help="Fiscal e-bill engine: run it, its sandboxes or the whole stack, and operate it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
core.register(app)
app.add_typer(audit.app, name="audit")
app.add_typer(verify.app, name="verify")
app.add_typer(keys.app, name="keys")
app.add_typer(identity.app, name="identity")


@app.callback()
def _setup() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def main(argv: list[str] | None = None) -> None:
    app(args=argv, prog_name="ebill")
