"""Alerts at the edges: a callback that names no assignment, a finished bundle, a refresh attempt whose
answer was lost, and eSIMs that had crossed thresholds before the alerts existed."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from temporalio.testing import ActivityEnvironment

from activities.contracts import RefreshEsim
from activities.esims import EsimActivities
from tests.b2c.conftest import B2C
from tests.esims.conftest import GB, post_callback, usage_callback, vendor_esim
from ttelgo import migrate
from ttelgo.esim_bundles import crossed
from ttelgo.models import Esim, EsimBundle, EsimBundleAlert, WebhookEvent


async def _applied(b2c: B2C) -> None:
    async with asyncio.timeout(30):
        while True:
            async with b2c.sessions() as session:
                pending = await session.scalar(
                    select(func.count()).select_from(WebhookEvent).where(WebhookEvent.processed_at.is_(None))
                )
            if pending == 0:
                return
            await asyncio.sleep(0.2)


async def _bundles(b2c: B2C, iccid: str) -> list[tuple[EsimBundle, list[str]]]:
    async with b2c.sessions() as session:
        rows = list(
            await session.scalars(
                select(EsimBundle).join(Esim, Esim.id == EsimBundle.esim_id).where(Esim.iccid == iccid)
            )
        )
        return [
            (
                row,
                sorted(
                    k.value
                    for k in await session.scalars(
                        select(EsimBundleAlert.kind).where(EsimBundleAlert.bundle_id == row.id)
                    )
                ),
            )
            for row in rows
        ]


async def test_a_callback_naming_no_assignment_updates_the_bundle_it_is_about(b2c: B2C) -> None:
    _, _, order = await vendor_esim(b2c)
    [esim] = order["esims"]
    await post_callback(b2c.api, usage_callback(esim["iccid"], 150_000_000, reference="assignment-1"))
    await _applied(b2c)
    await post_callback(b2c.api, usage_callback(esim["iccid"], 0, reference=None))
    await _applied(b2c)

    [(bundle, alerts)] = await _bundles(b2c, esim["iccid"])
    assert bundle.reference == "assignment-1" and bundle.data_remaining_bytes == 0
    assert alerts == ["USAGE_100", "USAGE_80"]


def test_a_finished_bundle_crosses_no_threshold() -> None:
    def used_up(state: str) -> EsimBundle:
        return EsimBundle(state=state, data_total_bytes=GB, data_remaining_bytes=0, unlimited=False)

    assert crossed(used_up("depleted")) != []
    assert [crossed(used_up(s)) for s in ("expired", "revoked", "lapsed")] == [[], [], []]


async def test_a_refresh_attempt_whose_answer_was_lost_hands_its_alerts_to_the_retry(b2c: B2C) -> None:
    _, _, order = await vendor_esim(b2c)
    [esim] = order["esims"]
    used = b2c.sim.admin.post(f"/esims/{esim['iccid']}/usage", json={"bytes": 850_000_000})
    assert used.status_code == 200, used.text
    env = ActivityEnvironment()
    env.info = replace(env.info, workflow_id=f"esim-refresh-{uuid.uuid4()}", workflow_run_id="run-1")
    client = b2c.sim.client()
    try:
        activities = EsimActivities(b2c.sessions, client)
        request = RefreshEsim(iccid=esim["iccid"], max_age_s=60, supplier_task_queue="unused")
        first = await env.run(activities.refresh, request)
        # The first attempt committed its claim, then its answer was lost: the retry finds the copy fresh.
        retry = await env.run(activities.refresh, request)
        env.info = replace(env.info, workflow_run_id="run-2")
        other_run = await env.run(activities.refresh, request)
    finally:
        await client.aclose()
    assert first.refreshed and [a.kind for a in first.alerts] == ["USAGE_80"]
    assert not retry.refreshed and retry.alerts == first.alerts
    assert other_run.alerts == []


async def test_migration_0014_records_thresholds_crossed_before_it(database_url: str) -> None:
    await asyncio.to_thread(migrate.downgrade, database_url, "0013")
    engine = create_async_engine(database_url)
    user, order = uuid.uuid4(), uuid.uuid4()
    remaining = {"8944000000000000011": 150_000_000, "8944000000000000012": 0, "8944000000000000013": GB // 2}
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, role) VALUES (:id, :email, 'x', 'customer')"
                ),
                {"id": user, "email": f"{user}@example.com"},
            )
            await conn.execute(
                text(
                    "INSERT INTO orders (id, channel, status, user_id, bundle_code, quantity, unit_price_minor, "
                    "total_minor, currency, workflow_id) VALUES (:id, 'B2C', 'COMPLETED', :user, "
                    "'esim_1GB_7D_FR_V2', 3, 100, 300, 'USD', :wf)"
                ),
                {"id": order, "user": user, "wf": f"order-{order}"},
            )
            for iccid, left in remaining.items():
                await conn.execute(
                    text(
                        "INSERT INTO esims (id, order_id, iccid, matching_id, smdp_address, status, bundle_name, "
                        "bundle_state, data_total_bytes, data_remaining_bytes, unlimited) VALUES (:id, :order, "
                        ":iccid, 'M', 'smdp.example.com', 'INSTALLED', 'esim_1GB_7D_FR_V2', 'active', :total, "
                        ":left, false)"
                    ),
                    {"id": uuid.uuid4(), "order": order, "iccid": iccid, "total": GB, "left": left},
                )
        await asyncio.to_thread(migrate.upgrade, database_url, "0014")
        async with engine.connect() as conn:
            alerts = sorted(
                (iccid, kind, by)
                for iccid, kind, by in await conn.execute(
                    text(
                        "SELECT e.iccid, a.kind, a.emitted_by FROM esim_bundle_alerts a "
                        "JOIN esim_bundles b ON b.id = a.bundle_id JOIN esims e ON e.id = b.esim_id"
                    )
                )
            )
    finally:
        await engine.dispose()
    assert alerts == [
        ("8944000000000000011", "USAGE_80", "migration:0014"),
        ("8944000000000000012", "USAGE_100", "migration:0014"),
        ("8944000000000000012", "USAGE_80", "migration:0014"),
    ]
