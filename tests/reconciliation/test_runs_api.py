"""The runs API: started with an Idempotency-Key (202 + Location), read with its findings, listed by page,
for staff only."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete

from tests.reconciliation.conftest import RUNS, Recon
from tests.support.stack import api_client
from ttelgo.models import IdempotencyRecord
from ttelgo.sandbox.processes import free_port


async def test_start_read_and_list_runs(recon: Recon) -> None:
    admin = await recon.world.admin()
    assert (await recon.api.post(RUNS, json={}, headers=admin)).status_code == 400  # no Idempotency-Key
    too_wide = await recon.api.post(
        RUNS, json={"window_minutes": 0}, headers={**admin, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert too_wide.status_code == 422

    headers = {**admin, "Idempotency-Key": str(uuid.uuid4())}
    body = {"window_minutes": 30, "reason": "after the supplier incident"}
    started = await recon.api.post(RUNS, json=body, headers=headers)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    assert started.headers["Location"] == f"{RUNS}/{run_id}"
    replayed = await recon.api.post(RUNS, json=body, headers=headers)
    assert replayed.status_code == 202 and replayed.content == started.content
    assert replayed.headers.get("Idempotent-Replayed") == "true"
    assert (await recon.api.post(RUNS, json={"window_minutes": 31}, headers=headers)).status_code == 422

    detail = await recon.finished(run_id)
    assert detail["status"] == "COMPLETED" and detail["requested_by"].startswith("admin:")
    window = datetime.fromisoformat(detail["window_end"]) - datetime.fromisoformat(detail["window_start"])
    assert window == timedelta(minutes=30)  # no grace in these tests
    [audit] = await recon.audit(target_type="reconciliation_run", target_id=run_id)
    assert audit.action == "reconciliation.run" and audit.reason == "after the supplier incident"

    second = await recon.run()  # no body: the configured window
    assert second["status"] == "COMPLETED"
    first_page = (await recon.api.get(RUNS, params={"page_size": 1}, headers=admin)).json()
    assert (first_page["total"], first_page["page"], len(first_page["items"])) == (2, 1, 1)
    assert first_page["items"][0]["id"] == second["id"]  # newest first
    second_page = (await recon.api.get(RUNS, params={"page_size": 1, "page": 2}, headers=admin)).json()
    assert [r["id"] for r in second_page["items"]] == [run_id]

    unknown = await recon.api.get(f"{RUNS}/{uuid.uuid4()}", headers=admin)
    assert unknown.status_code == 404


async def test_runs_are_for_staff_only(recon: Recon) -> None:
    customer = await recon.world.customer()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    assert (await recon.api.post(RUNS, json={}, headers=key)).status_code == 401
    assert (await recon.api.post(RUNS, json={}, headers={**customer.headers, **key})).status_code == 403
    assert (await recon.api.get(RUNS, headers=customer.headers)).status_code == 403
    assert (await recon.api.get(f"{RUNS}/{uuid.uuid4()}")).status_code == 401


async def test_a_key_retried_after_its_run_closed_finds_that_run(recon: Recon) -> None:
    admin = await recon.world.admin()
    key = str(uuid.uuid4())
    started = await recon.api.post(RUNS, json={}, headers={**admin, "Idempotency-Key": key})
    assert started.status_code == 202, started.text
    run_id, workflow_id = started.json()["id"], started.json()["workflow_id"]
    first = await recon.finished(run_id)
    handle = recon.world.temporal.get_workflow_handle(workflow_id)
    first_run = (await handle.describe()).run_id
    # The stored answer is gone (expired, or its request died before keeping it): the same key again.
    async with recon.world.sessions() as session, session.begin():
        await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.key == key))

    retried = await recon.api.post(RUNS, json={}, headers={**admin, "Idempotency-Key": key})
    assert retried.status_code == 202, retried.text
    assert retried.json()["id"] == run_id
    assert (await handle.describe()).run_id == first_run, "the closed run was not started a second time"
    assert (await recon.finished(run_id))["finished_at"] == first["finished_at"]


async def test_temporal_unreachable_is_503_with_retry_after(recon: Recon) -> None:
    admin = await recon.world.admin()
    no_temporal = recon.world.settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    async with api_client(no_temporal) as api:
        started = await api.post(RUNS, json={}, headers={**admin, "Idempotency-Key": str(uuid.uuid4())})
        unknown = await api.get(f"{RUNS}/{uuid.uuid4()}", headers=admin)
    for response in (started, unknown):
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert int(response.headers["Retry-After"]) > 0
        assert response.json()["code"] == "SERVICE_UNAVAILABLE"
