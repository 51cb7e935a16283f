"""`ttelgo dev` end to end, as a subprocess: it comes up, serves the Temporal UI, keeps its data across
restarts, explains a busy port, and leaves no process behind on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

import httpx
import psutil
import pytest

from ttelgo.sandbox import smtp_server
from ttelgo.sandbox.processes import free_port

pytestmark = pytest.mark.e2e
TTELGO = str(Path(sys.executable).parent / "ttelgo")
READY_TIMEOUT_S = 90


def stack_env(data_dir: Path) -> dict[str, str]:
    ports = {
        name: str(free_port())
        for name in (
            "API_PORT",
            "POSTGRES_PORT",
            "TEMPORAL_PORT",
            "TEMPORAL_UI_PORT",
            "LOCALSTRIPE_PORT",
            "ESIMGO_SIM_PORT",
            "WORKER_METRICS_PORT",
            "SMTP_PORT",
        )
    }
    unset = (
        "DATABASE_URL",
        "TEMPORAL_ADDRESS",
        "ESIMGO_API_URL",
        "ESIMGO_API_KEY",
        "STRIPE_SECRET_KEY",
        "STRIPE_API_BASE",
        "STRIPE_WEBHOOK_SECRET",
        "JWT_SECRET",
        "TTELGO_ADMIN_PASSWORD",
        "TTELGO_ENV",
    )
    env = {k: v for k, v in os.environ.items() if k not in unset}
    return {**env, **ports, "TTELGO_DATA_DIR": str(data_dir), "TTELGO_ADMIN_EMAIL": "ops@example.com"}


def wait_for(url: str, proc: subprocess.Popen[str], timeout: float = READY_TIMEOUT_S) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"ttelgo dev exited early:\n{proc.stdout.read() if proc.stdout else ''}"
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} not ready within {timeout}s")


@contextmanager
def dev_stack(env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [TTELGO, "dev"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
        proc.wait(timeout=30)


def stop_and_assert_nothing_left(proc: subprocess.Popen[str]) -> str:
    tree = psutil.Process(proc.pid).children(recursive=True)
    assert {"postgres", "temporal"} <= {p.name() for p in tree}, "the stack's children were not found"
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    _, alive = psutil.wait_procs(tree, timeout=5)
    assert alive == [], f"left behind: {[p.pid for p in alive]}"
    return output


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """Outside pytest's tmp dir, whose permissions a concurrent pytest run resets (see tests/conftest.py)."""
    with tempfile.TemporaryDirectory(prefix="ttelgo-e2e-") as directory:
        yield Path(directory)


def place_card_order(api: str, proc: subprocess.Popen[str], email: str) -> tuple[dict, dict[str, str]]:
    """A customer registers and orders one eSIM by card: the order waits for its payment."""
    wait_for(f"{api}/api/v1/catalogue/bundles/esim_1GB_7D_FR_V2", proc)  # the first catalogue sync
    token = httpx.post(
        f"{api}/api/v1/auth/register", json={"email": email, "password": "long enough pass"}, timeout=30
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    order = httpx.post(
        f"{api}/api/v1/orders",
        json={"bundle_code": "esim_1GB_7D_FR_V2"},
        headers={**headers, "Idempotency-Key": f"walkthrough-{email}"},
        timeout=30,
    ).json()
    assert order["status"] == "PAYMENT_PENDING", order
    return order, headers


def wait_for_mail(folder: Path, template: str, proc: subprocess.Popen[str]) -> EmailMessage:
    """The message of that template the dev stack's SMTP server wrote to its folder."""
    deadline = time.monotonic() + 60
    while True:
        found = [
            m
            for m in map(smtp_server.read, smtp_server.messages(folder))
            if m["X-TTelGo-Template"] == template
        ]
        if found:
            return found[0]
        assert proc.poll() is None and time.monotonic() < deadline, f"no {template} mail in {folder}"
        time.sleep(0.5)


def dev_pay(env: dict[str, str], order_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TTELGO, "dev", "pay", order_id], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def card_order_walkthrough(
    api: str, env: dict[str, str], proc: subprocess.Popen[str], email: str = "traveller@example.com"
) -> dict:
    """The README's B2C walk-through: order as a customer, `ttelgo dev pay`, localstripe's webhook → done."""
    order, headers = place_card_order(api, proc, email)
    paid = dev_pay(env, order["id"])
    assert paid.returncode == 0 and "succeeded" in paid.stdout, paid.stdout + paid.stderr
    deadline = time.monotonic() + 60
    while (current := httpx.get(f"{api}/api/v1/orders/{order['id']}", headers=headers, timeout=30).json())[
        "status"
    ] != "COMPLETED":
        assert time.monotonic() < deadline, f"order still {current['status']}"
        time.sleep(0.5)
    return current


def test_dev_stack_runs_restarts_with_its_data_and_stops_clean(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "data")
    api = f"http://127.0.0.1:{env['API_PORT']}"
    ui = f"http://127.0.0.1:{env['TEMPORAL_UI_PORT']}"

    with dev_stack(env) as proc:
        assert wait_for(f"{api}/readyz", proc).json()["status"] == "ready"
        namespaces = httpx.get(f"{ui}/api/v1/namespaces", timeout=5)
        assert namespaces.status_code == 200
        assert "default" in namespaces.text
        done = card_order_walkthrough(api, env, proc)
        ready = wait_for_mail(tmp_path / "data" / "mail", "esims_ready", proc)
        assert ready["To"] == "traveller@example.com"
        assert done["esims"][0]["lpa"] in ready.get_body(preferencelist=("plain",)).get_content()
        assert [p.get_content_type() for p in ready.walk()].count("image/png") == 1
        output = stop_and_assert_nothing_left(proc)
    for shown in (f"{api}/docs", ui, "ops@example.com", "logs"):
        assert shown in output
    first_password = (tmp_path / "data" / "dev-secrets.json").read_text()
    assert (tmp_path / "data" / "postgres" / "PG_VERSION").exists()
    assert (tmp_path / "data" / "temporal" / "temporal.db").exists()

    # Second start: same data dir, same ports → same database and Temporal state.
    with dev_stack(env) as proc:
        wait_for(f"{api}/readyz", proc)
        schedules = httpx.get(f"{ui}/api/v1/namespaces/default/schedules", timeout=5).json()
        assert any(s["scheduleId"] == "catalogue-sync" for s in schedules.get("schedules", []))
        stop_and_assert_nothing_left(proc)
    assert (tmp_path / "data" / "dev-secrets.json").read_text() == first_password


def test_busy_port_is_named_with_the_setting_that_moves_it(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "data")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", int(env["API_PORT"])))
        busy.listen()
        result = subprocess.run([TTELGO, "dev"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    message = " ".join(result.stdout.split())
    assert f"port {env['API_PORT']}" in message and "API_PORT" in message
    assert not (tmp_path / "data" / "postgres").exists(), "nothing should start when a port is taken"


def stack_child(proc: subprocess.Popen[str], service: str) -> psutil.Process | None:
    """The supervisor's direct child running `service` (as in `ttelgo dev`'s process table)."""
    marks = {
        "postgres": "/postgres",
        "temporal": "/temporal",
        "localstripe": "ttelgo.sandbox.localstripe_server",
        "esimgo-sim": "ttelgo.sandbox.esimgo_sim",
    }
    for child in psutil.Process(proc.pid).children():
        try:
            argv = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if argv and (argv[0].endswith(marks[service]) or marks[service] in argv):
            return child
    return None


def kill_and_see_it_back(proc: subprocess.Popen[str], service: str, ready: str) -> None:
    """SIGKILL one part of the stack; the supervisor starts it again and `ready` answers 200 once more."""
    victim = stack_child(proc, service)
    assert victim is not None, f"no {service} under ttelgo dev"
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while (back := stack_child(proc, service)) is None or back.pid == victim.pid:
        assert proc.poll() is None, f"ttelgo dev gave up after {service} was killed"
        assert time.monotonic() < deadline, f"{service} was not restarted"
        time.sleep(0.2)
    wait_for(ready, proc)


def test_dev_stack_brings_back_each_killed_part(tmp_path: Path) -> None:
    # A short payment window, so the order whose intent localstripe loses expires within the test.
    env = {**stack_env(tmp_path / "data"), "PAYMENT_WINDOW_MINUTES": "1"}
    api = f"http://127.0.0.1:{env['API_PORT']}"
    stripe = f"http://127.0.0.1:{env['LOCALSTRIPE_PORT']}"
    sim = f"http://127.0.0.1:{env['ESIMGO_SIM_PORT']}"
    ui = f"http://127.0.0.1:{env['TEMPORAL_UI_PORT']}"

    with dev_stack(env) as proc:
        wait_for(f"{api}/readyz", proc)
        before = card_order_walkthrough(api, env, proc, "before@example.com")
        assert len(before["esims"]) == 1, before
        unpaid, unpaid_headers = place_card_order(api, proc, "unpaid@example.com")

        # localstripe keeps intents in memory and the simulator its orders: both come back empty.
        kill_and_see_it_back(proc, "localstripe", f"{stripe}/js.stripe.com/v3/")
        kill_and_see_it_back(proc, "esimgo-sim", f"{sim}/_sim/stats")
        lost = dev_pay(env, unpaid["id"])
        said = lost.stdout + lost.stderr
        assert lost.returncode == 1, said
        assert "Traceback" not in said and len(said.strip().splitlines()) == 1, said
        assert "no longer has PaymentIntent" in said and "place a new order" in said, said

        for service in ("postgres", "temporal"):
            kill_and_see_it_back(proc, service, f"{api}/readyz")
            assert httpx.get(f"{api}/readyz", timeout=10).json()["status"] == "ready"
        # Temporal came back with its state: the unpaid order's workflow still runs, waiting for payment.
        workflow = wait_for(f"{ui}/api/v1/namespaces/default/workflows/order-{unpaid['id']}", proc).json()
        assert workflow["workflowExecutionInfo"]["status"] == "WORKFLOW_EXECUTION_STATUS_RUNNING", workflow

        # Database, Temporal, worker, localstripe and simulator all work again, with fresh identifiers.
        after = card_order_walkthrough(api, env, proc, "after@example.com")
        assert len(after["esims"]) == 1, after
        assert after["esims"][0]["iccid"] != before["esims"][0]["iccid"]

        # Its window closes: canceling an intent Stripe no longer has is no failure, the order EXPIRED.
        deadline = time.monotonic() + 120
        order_url = f"{api}/api/v1/orders/{unpaid['id']}"
        while (current := httpx.get(order_url, headers=unpaid_headers, timeout=30).json())["status"] in (
            "PAYMENT_PENDING",
            "PAYMENT_FAILED",
        ):
            assert time.monotonic() < deadline, "the unpaid order never expired"
            time.sleep(1)
        assert current["status"] == "EXPIRED", current
        output = stop_and_assert_nothing_left(proc)
    for service in ("localstripe", "esimgo-sim", "postgres", "temporal"):
        assert f"restarting {service}" in output, output


def poll(fetch: Callable[[], dict], done: Callable[[dict], bool], what: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while not done(current := fetch()):
        assert time.monotonic() < deadline, f"{what}: still {current}"
        time.sleep(0.5)
    return current


def test_esim_after_the_sale_on_the_dev_stack(tmp_path: Path) -> None:
    """Issue 13's walk-through on `ttelgo dev`: usage reported by the simulator shows on the customer's
    eSIM within seconds, and a card top-up paid with `ttelgo dev pay` lands on the same ICCID."""
    env = stack_env(tmp_path / "data")
    api = f"http://127.0.0.1:{env['API_PORT']}"
    sim = f"http://127.0.0.1:{env['ESIMGO_SIM_PORT']}"
    with dev_stack(env) as proc:
        wait_for(f"{api}/readyz", proc)
        order = card_order_walkthrough(api, env, proc, email="roamer@example.com")
        headers = {
            "Authorization": "Bearer "
            + httpx.post(
                f"{api}/api/v1/auth/login",
                json={"email": "roamer@example.com", "password": "long enough pass"},
                timeout=30,
            ).json()["access_token"]
        }
        iccid = order["esims"][0]["iccid"]
        esim_url = f"{api}/api/v1/esims/{iccid}"
        sold = poll(
            lambda: httpx.get(esim_url, headers=headers, timeout=30).json(),
            lambda view: view["bundles"] and view["bundles"][0]["data_total_mb"],
            "the sold bundle's data total",
        )
        assert sold["bundles"][0]["data_total_mb"] == 1000  # 1 GB in eSIM Go's decimal megabytes
        used = httpx.post(f"{sim}/_sim/esims/{iccid}/usage", json={"bytes": 850_000_000}, timeout=30)
        assert used.status_code == 200, used.text
        shown = poll(
            lambda: httpx.get(esim_url, headers=headers, timeout=30).json(),
            lambda view: (
                view["bundles"][0]["data_used_percent"] is not None
                and view["bundles"][0]["data_used_percent"] >= 84
            ),
            "85 % used",
            timeout=20,
        )
        assert round(shown["bundles"][0]["data_used_percent"]) == 85

        fitting = httpx.get(f"{esim_url}/topups/bundles", headers=headers, timeout=30).json()["items"]
        assert fitting, "no top-up bundle fits a French eSIM"
        topup = httpx.post(
            f"{esim_url}/topups",
            json={"bundle_code": fitting[0]["code"]},
            headers={**headers, "Idempotency-Key": "walkthrough-topup"},
            timeout=30,
        ).json()
        assert topup["status"] == "PAYMENT_PENDING", topup
        paid = dev_pay(env, topup["id"])
        assert paid.returncode == 0 and "succeeded" in paid.stdout, paid.stdout + paid.stderr
        poll(
            lambda: httpx.get(f"{api}/api/v1/orders/{topup['id']}", headers=headers, timeout=30).json(),
            lambda current: current["status"] == "COMPLETED",
            "the top-up",
        )
        after = httpx.get(esim_url, headers=headers, timeout=30).json()
        assert [b["order_id"] for b in after["bundles"]].count(topup["id"]) == 1
        assert after["iccid"] == iccid
        stop_and_assert_nothing_left(proc)
