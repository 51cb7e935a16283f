"""The FastAPI application factory; `uvicorn api.app:create_app --factory` serves it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from api.middleware import HttpMetrics, MetricsMiddleware, RequestIdMiddleware
from api.problems import install_problem_handlers
from api.routers import (
    admin_notifications,
    admin_orders,
    admin_reconciliation,
    admin_vendors,
    auth,
    catalogue,
    health,
    meta,
    orders,
    vendor_account,
    vendor_orders,
    vendor_topups,
    vendor_webhooks,
    webhooks,
)
from ttelgo import temporal
from ttelgo.catalogue.snapshot import CatalogueCache
from ttelgo.db import create_engine, session_factory
from ttelgo.observability import configure_logging
from ttelgo.payments import StripeGateway
from ttelgo.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = (settings or get_settings()).resolved()
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        assert settings.database_url and settings.stripe_secret_key
        app.state.engine = create_engine(settings.database_url)
        app.state.sessions = session_factory(app.state.engine)
        app.state.catalogue_cache = CatalogueCache(app.state.sessions)
        # Lazy: the API starts (and /readyz explains) even while Temporal is still coming up.
        app.state.temporal = await temporal.connect(settings, lazy=True)
        app.state.stripe = StripeGateway(settings.stripe_secret_key, settings.stripe_api_base)
        try:
            yield
        finally:
            await app.state.stripe.aclose()
            await app.state.engine.dispose()

    app = FastAPI(
        title="TTelGo API",
        version="0.1.0",
        summary="eSIM data bundles for travellers and resellers",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics_registry = CollectorRegistry()
    install_problem_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=HttpMetrics(app.state.metrics_registry))
    app.add_middleware(RequestIdMiddleware)
    routers = (
        health.router,
        meta.router,
        auth.router,
        catalogue.router,
        orders.router,
        vendor_orders.router,
        vendor_account.router,
        vendor_webhooks.router,
        vendor_topups.router,
        admin_orders.router,
        admin_vendors.router,
        admin_reconciliation.router,
        admin_notifications.router,
        webhooks.router,
    )
    for router in routers:
        app.include_router(router)
    return app
