"""The "expires tomorrow" alert of one bundle (`esim-expiry-{bundle id}`): started when a usage report
first gives the bundle an expiry, it sleeps on a durable timer until a day before it (visible in the
Temporal UI), reads the expiry again (a later report may have moved it) and sends the alert once."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.contracts import (
        CLAIM_EXPIRY_ALERT,
        EXPIRY_PLAN,
        EsimAlert,
        ExpiryPlan,
        ExpiryWatch,
    )
    from workflows.esim_alerts import send_alert

LOCAL_STEP = {"start_to_close_timeout": timedelta(seconds=30)}


@workflow.defn(name="EsimExpiry")
class EsimExpiryWorkflow:
    @workflow.run
    async def run(self, watch: ExpiryWatch) -> str:
        notice = timedelta(seconds=watch.notice_s)
        while True:
            plan = await workflow.execute_local_activity(
                EXPIRY_PLAN, watch, result_type=ExpiryPlan, **LOCAL_STEP
            )
            if plan.finished or plan.expires_at is None:
                return "nothing left to expire"
            now = workflow.now()
            if now >= plan.expires_at:
                return "expired before the notice was due"
            if now < plan.expires_at - notice:
                await workflow.sleep(plan.expires_at - notice - now)
                continue
            alerts = await workflow.execute_local_activity(
                CLAIM_EXPIRY_ALERT, watch, result_type=list[EsimAlert], **LOCAL_STEP
            )
            for alert in alerts:
                await send_alert(alert)
            return "notified" if alerts else "notified already"
