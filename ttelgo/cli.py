"""The `ttelgo` command line: the dev stack and schema management."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

import typer
from rich.console import Console

from ttelgo import dev_payments, migrate
from ttelgo.admins import ensure_admin
from ttelgo.db import create_engine, session_factory
from ttelgo.settings import ConfigurationError, get_settings

app = typer.Typer(help="TTelGo: eSIM data bundles on Temporal.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)
app.add_typer(db_app, name="db")
admin_app = typer.Typer(help="Staff accounts.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
dev_app = typer.Typer(help="The local development stack.")
app.add_typer(dev_app, name="dev")
console = Console()


def _database_url() -> str:
    try:
        url = get_settings().resolved().database_url
    except ConfigurationError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
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
