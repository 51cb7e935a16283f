"""The `ttelgo` command line: the dev stack, schema management, and operating Temporal.

Like worker.py it is an entry point, so its Temporal commands use the worker's schedules and workflow set;
they import them when run, so the other commands start without loading the workflows."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from ttelgo import dev_payments, migrate, replay, temporal_setup
from ttelgo.admins import ensure_admin
from ttelgo.db import create_engine, session_factory
from ttelgo.settings import SEARCH_ATTRIBUTES, ConfigurationError, Settings, get_settings

app = typer.Typer(help="TTelGo: eSIM data bundles on Temporal.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)
app.add_typer(db_app, name="db")
admin_app = typer.Typer(help="Staff accounts.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
dev_app = typer.Typer(help="The local development stack.")
app.add_typer(dev_app, name="dev")
console = Console()


def _resolved_settings() -> Settings:
    """The settings, and outside production the secrets `ttelgo dev` generated (so commands such as
    `workflows replay` read the dev stack's encrypted histories without exporting its key)."""
    from ttelgo.sandbox.stack import DEV_SECRETS, with_dev_secrets

    settings = get_settings()
    secrets_file = settings.data_dir / DEV_SECRETS
    if not settings.is_production and secrets_file.exists():
        settings = with_dev_secrets(settings, json.loads(secrets_file.read_text()))
    try:
        return settings.resolved()
    except ConfigurationError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc


def _database_url() -> str:
    url = _resolved_settings().database_url
    assert url
    return url


@dev_app.callback(invoke_without_command=True)
def dev(ctx: typer.Context) -> None:
    """Start PostgreSQL, Temporal (+ UI), localstripe, the eSIM Go simulator, the worker and the API."""
    if ctx.invoked_subcommand:
        return
    from ttelgo.sandbox.stack import DevStack

    raise typer.Exit(DevStack(get_settings()).run())


@dev_app.command("pay")
def dev_pay(
    order_id: Annotated[uuid.UUID, typer.Argument(help="an order waiting for its card payment")],
    decline: bool = typer.Option(False, "--decline", help="pay with a card that is declined"),
) -> None:
    """Pay a pending card order against localstripe, as Stripe.js would in a browser."""
    settings = get_settings().resolved()
    if not settings.stripe_api_base:
        console.print("[red]dev pay only talks to localstripe; STRIPE_SECRET_KEY points at real Stripe[/]")
        raise typer.Exit(2)
    card = "pm_card_chargeCustomerFail" if decline else "pm_card_visa"
    try:
        intent = asyncio.run(dev_payments.pay_order(settings, order_id, card))
    except dev_payments.NothingToPay as exc:
        # soft_wrap: one line however narrow the terminal, so it reads (and greps) as one message.
        console.print(f"[red]{exc}[/]", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from exc
    colour = "green" if intent.status == "succeeded" else "yellow"
    console.print(
        f"[{colour}]{intent.id}: {intent.status}[/] ({intent.amount_minor} {intent.currency} with {card}); "
        "the webhook follows in about a second: GET /api/v1/orders/{id} shows the order move on"
    )


@dev_app.command("mail")
def dev_mail(
    which: Annotated[
        str | None, typer.Argument(help="a message's number in the list, or its file name")
    ] = None,
) -> None:
    """List the e-mail the dev stack's SMTP server received (.ttelgo/mail), or show one."""
    from ttelgo.sandbox import smtp_server

    folder = get_settings().data_dir / "mail"
    found = smtp_server.messages(folder)
    if which is None:
        if not found:
            console.print(f"no messages in {folder}", highlight=False)
        for number, path in enumerate(found, start=1):
            message = smtp_server.read(path)
            console.print(
                f"{number:>4}  {path.name}  to {message['To']}  {message['Subject']}",
                highlight=False,
                soft_wrap=True,
            )
        return
    if which.isdigit() and 1 <= int(which) <= len(found):
        path = found[int(which) - 1]
    else:
        path = folder / which
        if path.suffix != ".eml" or path.parent != folder or not path.is_file():
            console.print(f"[red]no message {which!r} in {folder}; `ttelgo dev mail` lists them[/]")
            raise typer.Exit(1)
    message = smtp_server.read(path)
    for header in ("Date", "From", "To", "Subject", "Message-ID"):
        console.print(f"{header}: {message[header]}", highlight=False, soft_wrap=True)
    body = message.get_body(preferencelist=("plain", "html"))
    console.print()
    console.print(body.get_content() if body is not None else "(no text part)", highlight=False, markup=False)
    for part in message.walk():
        if part.get_content_maintype() == "image":
            size = len(part.get_payload(decode=True) or b"")
            console.print(
                f"[dim]attachment {part.get_filename()} ({part.get_content_type()}, {size} bytes)[/]"
            )
    console.print(f"[dim]{path}[/]", highlight=False)


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


@admin_app.command("create-user")
def admin_create_user(
    email: str = typer.Argument(..., help="the admin's e-mail (login name)"),
    password: str = typer.Option(
        ...,
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        help="prompted for when not given; at least 12 characters",
    ),
) -> None:
    """Create an admin, or reset an existing admin's password (works against any DATABASE_URL)."""
    if len(password) < 12:
        console.print("[red]the password needs at least 12 characters[/]")
        raise typer.Exit(2)
    url = _database_url()

    async def run() -> bool:
        engine = create_engine(url, pool_size=1)
        try:
            async with session_factory(engine)() as session:
                return await ensure_admin(session, email, password)
        finally:
            await engine.dispose()

    created = asyncio.run(run())
    console.print(f"[green]admin {email} {'created' if created else 'updated'}[/]")


ledger_app = typer.Typer(help="The double-entry ledger.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")


@ledger_app.command("check")
def ledger_check() -> None:
    """Verify the ledger's invariants; exit 1 when any is broken."""
    from ttelgo import ledger

    url = _database_url()

    async def run() -> tuple[list[str], ledger.LedgerSize]:
        engine = create_engine(url, pool_size=1)
        try:
            # One REPEATABLE READ snapshot, so totals and transfers are read as of the same moment.
            async with session_factory(engine)() as session:
                await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
                return await ledger.check_invariants(session), await ledger.ledger_size(session)
        finally:
            await engine.dispose()

    violations, size = asyncio.run(run())
    if violations:
        for violation in violations:
            console.print(f"[red]✗[/] {violation}", highlight=False)
        console.print(f"[red]{len(violations)} ledger violation(s)[/]")
        raise typer.Exit(1)
    console.print(f"[green]ledger OK: {size.accounts} accounts, {size.transfers} transfers[/]")


orders_app = typer.Typer(help="Orders and what they promise.", no_args_is_help=True)
app.add_typer(orders_app, name="orders")


@orders_app.command("check")
def orders_check() -> None:
    """Verify the order invariants (delivered, paid, refunds add up); exit 1 when any is broken."""
    from ttelgo.order_invariants import check_order_invariants

    url = _database_url()

    async def run() -> list[str]:
        engine = create_engine(url, pool_size=1)
        try:
            async with session_factory(engine)() as session:
                await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
                return await check_order_invariants(session)
        finally:
            await engine.dispose()

    violations = asyncio.run(run())
    for violation in violations:
        console.print(f"[red]✗[/] {violation}", highlight=False)
    if violations:
        console.print(f"[red]{len(violations)} order violation(s)[/]")
        raise typer.Exit(1)
    console.print("[green]orders OK[/]")


temporal_app = typer.Typer(help="The Temporal namespace TTelGo runs in.", no_args_is_help=True)
app.add_typer(temporal_app, name="temporal")


@temporal_app.command("setup")
def temporal_setup_command(
    retention_days: int = typer.Option(
        30, "--retention-days", min=1, help="history retention of a namespace this creates"
    ),
    wait: float = typer.Option(60, "--wait", min=0, help="seconds to wait for Temporal to answer"),
) -> None:
    """Prepare TEMPORAL_NAMESPACE: create it if missing, register the search attributes, create or update the
    schedules. Safe to run again (docker-compose runs it before the API and the worker)."""
    from worker import ensure_schedules

    settings = _resolved_settings()

    async def run(client: Client) -> int:
        console.print(f"Temporal at {settings.temporal_address}", highlight=False)
        outcome = await temporal_setup.ensure_namespace(client, timedelta(days=retention_days))
        console.print(f"[green]✓[/] namespace {client.namespace}: {outcome}", highlight=False)
        for name, state in (await temporal_setup.ensure_search_attributes(client, SEARCH_ATTRIBUTES)).items():
            console.print(f"[green]✓[/] search attribute {name} ({state})", highlight=False)
        for schedule_id in await ensure_schedules(client, settings):
            console.print(f"[green]✓[/] schedule {schedule_id} (created or updated)", highlight=False)
        console.print("[green]Temporal is set up for TTelGo[/]")
        return 0

    _run_against_temporal(run, settings, wait=timedelta(seconds=wait))


workflows_app = typer.Typer(help="Workflow histories on the Temporal server.", no_args_is_help=True)
app.add_typer(workflows_app, name="workflows")

QueryOption = Annotated[
    str | None,
    typer.Option("--query", help="Temporal visibility query, e.g. \"WorkflowType='Order'\"; default: any"),
]
LimitOption = Annotated[int, typer.Option("--limit", min=1, help="at most this many executions of --query")]
WorkflowIdOption = Annotated[
    list[str] | None,
    typer.Option("--workflow-id", help="this workflow's latest run (repeatable; instead of --query)"),
]


def _selection(query: str | None, limit: int, workflow_ids: list[str] | None) -> replay.Selection:
    if query and workflow_ids:
        console.print("[red]give --query or --workflow-id, not both[/]")
        raise typer.Exit(2)
    return replay.Selection(query=query, workflow_ids=tuple(workflow_ids or ()), limit=limit)


def _nothing_matched(selection: replay.Selection) -> int:
    what = f"query {selection.query!r}" if selection.query else "any workflow"
    console.print(f"[yellow]no workflow matched {what}[/]", highlight=False, soft_wrap=True)
    return 2


@workflows_app.command("replay")
def workflows_replay(
    query: QueryOption = None, limit: LimitOption = 100, workflow_id: WorkflowIdOption = None
) -> None:
    """Replay histories from the server against the workflow code on disk, with the worker's workflows and
    data converter: exit 1 on any nondeterminism (run it before deploying a worker change), 2 when nothing
    matched."""
    from workflows.registry import WORKFLOWS

    selection = _selection(query, limit, workflow_id)
    settings = _resolved_settings()

    async def run(client: Client) -> int:
        replayed = failed = 0
        async for outcome in replay.replay(client, WORKFLOWS, selection):
            colour = "green" if outcome.failure is None else "red"
            reason = f": {outcome.reason}" if outcome.failure else ""
            console.print(
                f"{outcome.workflow_id}  {outcome.run_id}  {outcome.workflow_type}  "
                f"[{colour}]{outcome.verdict}[/]{escape(reason)}",
                highlight=False,
                soft_wrap=True,
            )
            replayed += 1
            failed += outcome.failure is not None
        if not replayed:
            return _nothing_matched(selection)
        if failed:
            console.print(f"[red]{failed} of {replayed} histories failed to replay[/]")
            return 1
        console.print(f"[green]{replayed} histories replayed, all deterministic[/]")
        return 0

    _run_against_temporal(run, settings)


@workflows_app.command("export")
def workflows_export(
    query: QueryOption = None,
    limit: LimitOption = 100,
    workflow_id: WorkflowIdOption = None,
    out: Annotated[Path, typer.Option("--out", file_okay=False, help="folder to write into")] = Path(
        "tests/histories"
    ),
) -> None:
    """Save histories as JSON files (`<type>_<workflow id>.json`) to replay in tests/test_replay.py. Payloads
    stay as stored: encrypted ones replay only with the TEMPORAL_PAYLOAD_KEYS that wrote them."""
    selection = _selection(query, limit, workflow_id)
    settings = _resolved_settings()

    async def run(client: Client) -> int:
        written = 0
        async for history in replay.fetch_histories(client, selection):
            path = replay.save(history, out)
            console.print(f"[green]✓[/] {path}", highlight=False, soft_wrap=True)
            written += 1
        return 0 if written else _nothing_matched(selection)

    _run_against_temporal(run, settings)


def _run_against_temporal(
    work: Callable[[Client], Awaitable[int]], settings: Settings, wait: timedelta = timedelta(0)
) -> NoReturn:
    """Connects (waiting up to `wait` for the server), runs `work` and exits with the code it returns; an
    unreachable or unfit server (1) and an unknown workflow id (2) end the command with their message."""

    async def run() -> int:
        return await work(await temporal_setup.connect(settings, wait))

    try:
        code = asyncio.run(run())
    except temporal_setup.SetupError as exc:
        console.print(f"[red]✗ {escape(str(exc))}[/]", highlight=False, soft_wrap=True)
        code = 1
    except replay.NoSuchWorkflow as exc:
        console.print(f"[yellow]{exc}[/]", highlight=False)
        code = 2
    except RPCError as exc:  # a malformed query, an unknown namespace, no permission
        console.print(f"[red]✗ Temporal refused: {escape(exc.message)}[/]", highlight=False, soft_wrap=True)
        code = 2 if exc.status is RPCStatusCode.INVALID_ARGUMENT else 1
    # The SDK's Rust threads can abort the interpreter's shutdown once a client was made (SIGABRT, exit 134:
    # temporalio/sdk-python#300), which would fail a compose job that succeeded: leave without that shutdown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
