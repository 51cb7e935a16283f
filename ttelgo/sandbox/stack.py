"""`ttelgo dev`: the whole stack on one machine, started in order, supervised, and stopped cleanly.

Each external service whose setting is unset gets its local stand-in; the API and the worker get the
resolved settings through their environment, exactly as they would in production.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from ttelgo import codec, migrate
from ttelgo.admins import ensure_admin
from ttelgo.db import create_engine, session_factory
from ttelgo.sandbox import smtp_server
from ttelgo.sandbox.postgres import can_connect, ensure_database, start_postgres
from ttelgo.sandbox.processes import ManagedProcess, PortInUseError, port_is_free, wait_until
from ttelgo.sandbox.temporal_server import start_temporal, temporal_answers
from ttelgo.settings import Settings

ESIMGO_SIM_MODULE = "ttelgo.sandbox.esimgo_sim"
LOCALSTRIPE_MODULE = "ttelgo.sandbox.localstripe_server"
SMTP_MODULE = "ttelgo.sandbox.smtp_server"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
RESTARTABLE = ("postgres", "temporal", "esimgo-sim", "localstripe", "smtp", "worker", "api")
MAX_RESTARTS = 5


def esimgo_sim_args(port: int, data_dir: Path) -> list[str]:
    """How `ttelgo dev` runs the simulator: its identifier state in the data folder, so a restart
    (of the simulator or of the whole stack) never issues an ICCID or matching id issued before."""
    return ["-m", ESIMGO_SIM_MODULE, "--port", str(port), "--state-dir", str(data_dir / "esimgo-sim")]


DEV_SECRETS = "dev-secrets.json"


def load_dev_secrets(path: Path) -> dict[str, str]:
    """Secrets generated once per data dir, so tokens and the admin password survive restarts."""
    stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    wanted = {
        "jwt_secret": lambda: secrets.token_urlsafe(48),
        "admin_password": lambda: secrets.token_urlsafe(12),
        "stripe_webhook_secret": lambda: "whsec_" + secrets.token_hex(24),
        "temporal_payload_keys": lambda: codec.new_key_spec("dev-1"),
    }
    missing = {name: make() for name, make in wanted.items() if name not in stored}
    if missing:
        stored.update(missing)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, indent=2))
        path.chmod(0o600)
    return stored


def with_dev_secrets(base: Settings, dev: dict[str, str]) -> Settings:
    """`base` with every secret it leaves unset taken from the dev stack's generated ones."""
    return base.model_copy(
        update={
            "jwt_secret": base.jwt_secret or dev.get("jwt_secret"),
            "ttelgo_admin_password": base.ttelgo_admin_password or dev.get("admin_password"),
            "stripe_webhook_secret": base.stripe_webhook_secret or dev.get("stripe_webhook_secret"),
            "temporal_payload_keys": base.temporal_payload_keys or dev.get("temporal_payload_keys"),
        }
    )


@dataclass
class DevStack:
    base: Settings
    console: Console = field(default_factory=Console)
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    _stop_requested: bool = False
    _restarts: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = self.base.data_dir.resolve()
        self.logs = self.data_dir / "logs"
        dev = load_dev_secrets(self.data_dir / DEV_SECRETS)
        self.settings = (
            with_dev_secrets(self.base, dev).model_copy(update={"data_dir": self.data_dir}).resolved()
        )
        self.admin_password_generated = self.base.ttelgo_admin_password is None
        self.stand_ins = {
            "postgres": self.base.database_url is None,
            "temporal": self.base.temporal_address is None,
            "localstripe": self.base.stripe_secret_key is None and self.base.stripe_api_base is None,
            "esimgo-sim": self.base.esimgo_api_url is None
            and importlib.util.find_spec(ESIMGO_SIM_MODULE) is not None,
            "smtp": self.base.smtp_host is None,
        }

    # -- the story ---------------------------------------------------------------------------------------
    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._request_stop)
        try:
            self.check_ports()
            self.start_all()
            if self._stop_requested:
                return 0
            self.print_summary()
            return self.supervise()
        except Exception as exc:
            self.console.print(f"[bold red]✗ {exc}[/]")
            return 1
        finally:
            self.stop_all()

    def start_all(self) -> None:
        s = self.settings
        steps: list[tuple[str, bool, Callable[[], Any]]] = [
            (f"PostgreSQL on 127.0.0.1:{s.postgres_port}", self.stand_ins["postgres"], self._start_postgres),
            (
                f"Temporal dev server on 127.0.0.1:{s.temporal_port}, UI on :{s.temporal_ui_port}",
                self.stand_ins["temporal"],
                self._start_temporal,
            ),
            (
                f"localstripe on 127.0.0.1:{s.localstripe_port}",
                self.stand_ins["localstripe"],
                lambda: self._start_python(
                    "localstripe",
                    [
                        *("-m", LOCALSTRIPE_MODULE, "--port", str(s.localstripe_port)),
                        *("--webhook-url", f"http://{s.api_host}:{s.api_port}/api/v1/webhooks/stripe"),
                    ],
                ),
            ),
            (
                f"eSIM Go simulator on 127.0.0.1:{s.esimgo_sim_port}",
                self.stand_ins["esimgo-sim"],
                lambda: self._start_python("esimgo-sim", esimgo_sim_args(s.esimgo_sim_port, self.data_dir)),
            ),
            (
                f"SMTP server on 127.0.0.1:{s.smtp_port}, messages in {self.data_dir / 'mail'}",
                self.stand_ins["smtp"],
                lambda: self._start_python(
                    "smtp",
                    ["-m", SMTP_MODULE, "--port", str(s.smtp_port), "--dir", str(self.data_dir / "mail")],
                ),
            ),
            (
                "database migrations (alembic upgrade head)",
                True,
                lambda: migrate.upgrade(str(s.database_url)),
            ),
            (f"admin account {s.ttelgo_admin_email}", True, self._ensure_admin),
            ("worker", True, lambda: self._start_python("worker", ["worker.py"])),
            (
                f"API on http://{s.api_host}:{s.api_port}",
                True,
                lambda: self._start_python("api", self._api_argv()),
            ),
        ]
        for title, wanted, start in steps:
            if self._stop_requested:
                return
            if not wanted:
                self.console.print(f"[dim]- {title}: using the configured service[/]")
                continue
            started = time.monotonic()
            with self.console.status(f"Starting {title}…"):
                start()
            self.console.print(f"[green]✓[/] {title} [dim]({time.monotonic() - started:.1f}s)[/]")

    def supervise(self) -> int:
        while not self._stop_requested:
            for name, process in list(self.processes.items()):
                if process.running:
                    continue
                self.console.print(
                    f"[bold red]{name} exited with code {process.returncode}[/]\n{process.log_tail()}"
                )
                if name not in RESTARTABLE or not self._may_restart(name):
                    return 1
                self.console.print(f"[yellow]restarting {name}[/]")
                self.restart(name)
            time.sleep(0.5)
        return 0

    def restart(self, name: str) -> None:
        """Start a crashed part again, with the same command and its data (PostgreSQL's data folder and
        Temporal's database file are on disk). PostgreSQL and Temporal are waited for, so their dependants
        find them back: the API and the worker reconnect by themselves (pool pre-ping, the Temporal
        client's retries). A part that fails again is seen by the next round of `supervise`."""
        old = self.processes[name]
        old.stop()  # reaps it and ends what it left behind (a killed postmaster's backends)
        process = self.processes[name] = old.fresh().start()
        wait_for = self._restart_checks().get(name)
        if wait_for is None:
            return
        started = time.monotonic()
        try:
            wait_until(
                lambda: self._stop_requested or wait_for(), 60, f"waiting for {name} to come back", process
            )
        except (RuntimeError, TimeoutError) as exc:
            self.console.print(f"[red]{exc}[/]")
            return
        self.console.print(f"[green]✓[/] {name} is back [dim]({time.monotonic() - started:.1f}s)[/]")

    def stop_all(self) -> None:
        if self.processes:
            self.console.print("Stopping…")
        for name, process in reversed(list(self.processes.items())):
            process.stop()
            self.console.print(f"[dim]  stopped {name}[/]")
        self.processes.clear()

    # -- the parts ---------------------------------------------------------------------------------------
    def check_ports(self) -> None:
        s = self.settings
        wanted = [
            (s.postgres_port, "POSTGRES_PORT", self.stand_ins["postgres"]),
            (s.temporal_port, "TEMPORAL_PORT", self.stand_ins["temporal"]),
            (s.temporal_ui_port, "TEMPORAL_UI_PORT", self.stand_ins["temporal"]),
            (s.localstripe_port, "LOCALSTRIPE_PORT", self.stand_ins["localstripe"]),
            (s.esimgo_sim_port, "ESIMGO_SIM_PORT", self.stand_ins["esimgo-sim"]),
            (s.smtp_port, "SMTP_PORT", self.stand_ins["smtp"]),
            (s.worker_metrics_port, "WORKER_METRICS_PORT", True),
            (s.api_port, "API_PORT", True),
        ]
        for port, setting, needed in wanted:
            if needed and not port_is_free(port):
                raise PortInUseError(port, setting)

    def _child_env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.settings.service_env(), "PYTHONUNBUFFERED": "1", **extra}

    def _start_postgres(self) -> None:
        s = self.settings
        self.processes["postgres"] = start_postgres(
            self.data_dir / "postgres", s.postgres_port, self.logs / "postgres.log"
        )
        asyncio.run(ensure_database(s.postgres_port, "ttelgo"))

    def _start_temporal(self) -> None:
        s = self.settings
        self.processes["temporal"] = start_temporal(
            self.data_dir / "temporal",
            s.temporal_port,
            s.temporal_ui_port,
            self.logs / "temporal.log",
            codec_endpoint=f"http://{s.api_host}:{s.api_port}/codec",
        )

    def _start_python(self, name: str, args: list[str]) -> None:
        env = self._child_env(
            ESIMGO_SIM_CALLBACK_URL=f"http://{self.settings.api_host}:{self.settings.api_port}/api/v1/webhooks/esimgo",
            ESIMGO_SIM_API_KEY=str(self.settings.esimgo_api_key),
        )
        process = ManagedProcess(
            name, [sys.executable, *args], self.logs / f"{name}.log", env, PROJECT_ROOT
        ).start()
        self.processes[name] = process
        wait_until(self._ready_checks()[name], 60, f"waiting for {name} to be ready", process)

    def _ready_checks(self) -> dict[str, Callable[[], bool]]:
        s = self.settings
        return {
            "localstripe": lambda: (
                httpx.get(
                    f"{s.stripe_api_base}/v1/customers", auth=(str(s.stripe_secret_key), ""), timeout=2
                ).status_code
                == 200
            ),
            "esimgo-sim": lambda: (
                httpx.get(
                    f"{s.esimgo_api_url}/organisation",
                    headers={"X-API-Key": str(s.esimgo_api_key)},
                    timeout=2,
                ).is_success
            ),
            "smtp": lambda: smtp_server.answers(s.smtp_port),
            "worker": lambda: (
                httpx.get(f"http://127.0.0.1:{s.worker_metrics_port}/metrics", timeout=2).is_success
            ),
            "api": lambda: (
                httpx.get(f"http://{s.api_host}:{s.api_port}/readyz", timeout=3).status_code == 200
            ),
        }

    def _restart_checks(self) -> dict[str, Callable[[], bool]]:
        s = self.settings
        return {
            "postgres": lambda: asyncio.run(can_connect(s.postgres_port)),
            "temporal": lambda: temporal_answers(s.temporal_ui_port),
        }

    def _api_argv(self) -> list[str]:
        return ["-m", "api.serve"]  # host, port and the server's limits come from the settings it inherits

    def _ensure_admin(self) -> None:
        async def run() -> None:
            engine = create_engine(str(self.settings.database_url), pool_size=1)
            try:
                async with session_factory(engine)() as session:
                    await ensure_admin(
                        session, self.settings.ttelgo_admin_email, str(self.settings.ttelgo_admin_password)
                    )
            finally:
                await engine.dispose()

        asyncio.run(run())

    def _may_restart(self, name: str) -> bool:
        now = time.monotonic()
        recent = [t for t in self._restarts.get(name, []) if now - t < 60] + [now]
        self._restarts[name] = recent
        return len(recent) <= MAX_RESTARTS

    def _request_stop(self, signum: int, _frame: object) -> None:
        self._stop_requested = True
        self.console.print(f"\n[yellow]{signal.Signals(signum).name} received[/]")

    def print_summary(self) -> None:
        s = self.settings
        api = f"http://{s.api_host}:{s.api_port}"
        rows = [
            ("API docs", f"{api}/docs"),
            ("Health", f"{api}/healthz  ·  {api}/readyz  ·  {api}/metrics"),
            (
                "Temporal UI",
                f"http://127.0.0.1:{s.temporal_ui_port}"
                if self.stand_ins["temporal"]
                else str(s.temporal_address),
            ),
            (
                "Temporal",
                f"{s.temporal_address}  namespace {s.temporal_namespace}  task queue {s.temporal_task_queue}",
            ),
            ("PostgreSQL", str(s.database_url)),
            ("Stripe", str(s.stripe_api_base or "api.stripe.com")),
            ("eSIM Go", str(s.esimgo_api_url)),
            (
                "E-mail",
                f"{self.data_dir / 'mail'} (ttelgo dev mail)"
                if self.stand_ins["smtp"]
                else f"{s.smtp_host}:{s.smtp_port}",
            ),
            (
                "Admin",
                f"{s.ttelgo_admin_email} / "
                + (
                    str(s.ttelgo_admin_password)
                    if self.admin_password_generated
                    else "(from TTELGO_ADMIN_PASSWORD)"
                ),
            ),
            ("Logs", f"{self.logs}/<service>.log"),
            ("Data", f"{self.data_dir} (kept across restarts)"),
        ]
        self.console.print("[bold green]TTelGo dev stack is ready[/]")
        for name, value in rows:
            # soft_wrap: long paths and URLs stay whole, so they can be copied (and grepped by tests).
            self.console.print(f"  [bold]{name:<12}[/] {value}", soft_wrap=True)
        self.console.print("Press Ctrl-C to stop everything.")
