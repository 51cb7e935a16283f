"""Builds the activity instances with their shared clients (one DB pool, one eSIM Go client per process)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from activities.catalogue import CatalogueActivities
from activities.esim_alerts import AlertActivities
from activities.esimgo import SupplierActivities
from activities.esims import EsimActivities
from activities.housekeeping import HousekeepingActivities
from activities.invoicing import InvoicingActivities
from activities.ledger import LedgerActivities
from activities.notifications import NotificationActivities
from activities.orders import OrderActivities
from activities.payments import PaymentActivities
from activities.reconciliation import ReconciliationActivities
from activities.refunds import RefundActivities
from activities.supplier_balance import SupplierBalanceActivities
from activities.supplier_batcher import ask_for_purchase
from activities.webhooks import WebhookActivities
from ttelgo.db import create_engine, session_factory
from ttelgo.esimgo import EsimGoClient
from ttelgo.mail.smtp import SmtpMailer
from ttelgo.payments import StripeGateway
from ttelgo.settings import Settings


@dataclass
class ActivitySet:
    main: list[Callable[..., Any]]  # the main task queue
    supplier: list[Callable[..., Any]]  # the rate-limited eSIM Go provisioning queue
    close: Callable[[], Awaitable[None]]


async def build_activities(settings: Settings) -> ActivitySet:
    assert settings.database_url and settings.esimgo_api_url and settings.esimgo_api_key
    assert settings.stripe_secret_key
    engine = create_engine(settings.database_url)
    esimgo = EsimGoClient(
        settings.esimgo_api_url,
        settings.esimgo_api_key,
        max_requests_per_second=settings.esimgo_max_requests_per_second,
        timeout=httpx.Timeout(settings.esimgo_timeout_seconds, connect=5.0),
    )
    sessions = session_factory(engine)
    catalogue = CatalogueActivities(esimgo, sessions)
    esims = EsimActivities(sessions, esimgo)
    orders = OrderActivities(sessions)
    money = LedgerActivities(sessions)
    supplier = SupplierActivities(
        esimgo, sessions, commit_delay=timedelta(seconds=settings.esimgo_commit_delay_seconds)
    )
    stripe = StripeGateway(settings.stripe_secret_key, settings.stripe_api_base)
    payments = PaymentActivities(stripe, sessions)
    notifications = NotificationActivities(
        sessions,
        SmtpMailer(settings) if settings.smtp_host and settings.mail_from else None,
        retry_budget_s=round(settings.mail_retry_budget_minutes * 60),
    )
    refunds = RefundActivities(sessions)
    supplier_balance = SupplierBalanceActivities(esimgo)
    housekeeping = HousekeepingActivities(sessions)
    invoices = InvoicingActivities(
        sessions, mail_retry_budget_s=round(settings.mail_retry_budget_minutes * 60)
    )
    reconciliation = ReconciliationActivities(esimgo, stripe, sessions)
    webhooks = WebhookActivities(
        sessions,
        public_only=settings.webhooks_public_only,
        timeout_s=settings.webhook_timeout_seconds,
        window_s=settings.webhook_retry_window_s,
        first_backoff_s=settings.webhook_first_backoff_seconds,
    )
    alerts = AlertActivities(sessions, notifications, webhooks)

    async def close() -> None:
        await esimgo.aclose()
        await stripe.aclose()
        await engine.dispose()

    return ActivitySet(
        main=[
            catalogue.sync,
            esims.apply_usage,
            esims.expiry_plan,
            esims.claim_expiry_alert,
            alerts.send,
            alerts.resend_unsent,
            orders.create_record,
            orders.set_status,
            orders.store_esims,
            orders.stop_buying,
            ask_for_purchase,
            money.hold_funds,
            money.post_hold,
            money.void_hold,
            money.credit_topup,
            money.book_supplier_cost,
            money.credit_supplier_cost,
            payments.open,
            payments.cancel,
            payments.record,
            payments.refund,
            notifications.esims_ready,
            notifications.queue,
            notifications.send,
            notifications.fail,
            refunds.reserve,
            refunds.settle,
            money.credit_refund,
            payments.create_refund,
            payments.read_refund,
            reconciliation.open,
            reconciliation.close,
            reconciliation.reconcile_stripe,
            reconciliation.find_stuck_orders,
            webhooks.emit,
            webhooks.send,
            webhooks.finish,
            housekeeping.prune,
            invoices.list_vendors,
            invoices.issue,
        ],
        supplier=[
            supplier.place_order,
            supplier.place_batch,
            supplier.fetch_install_details,
            supplier.release_order,
            supplier.revoke_bundles,
            reconciliation.find_unclaimed_supplier_orders,
            reconciliation.resolve_supplier_order,
            supplier_balance.read_balance,
            esims.refresh,
        ],
        close=close,
    )
