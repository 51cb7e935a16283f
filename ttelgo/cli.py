"""The `ttelgo` command line: the dev stack and schema management."""

from __future__ import annotations

import typer
from rich.console import Console

from ttelgo import migrate
from ttelgo.settings import ConfigurationError, get_settings

app = typer.Typer(help="TTelGo: eSIM data bundles on Temporal.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console()


def _database_url() -> str:
    try:
        url = get_settings().resolved().database_url
    except ConfigurationError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    assert url
    return url


@app.command()
def dev() -> None:
    """Start PostgreSQL, Temporal (+ UI), localstripe, the eSIM Go simulator, the worker and the API."""
    from ttelgo.sandbox.stack import DevStack

    raise typer.Exit(DevStack(get_settings()).run())


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply migrations up to REVISION."""
    migrate.upgrade(_database_url(), revision)
    console.print(f"[green]database at {revision}[/]")


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument(...)) -> None:
    """Revert migrations down to REVISION (`base` empties the schema)."""
    migrate.downgrade(_database_url(), revision)
    console.print(f"[green]database at {revision}[/]")
