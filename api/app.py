"""The FastAPI application factory; `python -m api.serve` serves it (see api.serve for the server limits)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from api.business_metrics import BusinessMetrics
from api.client_address import ClientAddressMiddleware
from api.cors import install_cors
from api.docs import install_docs
from api.input_guard import ControlCharacterGuard
from api.middleware import HttpMetrics, MetricsMiddleware, RequestIdMiddleware
from api.openapi import install_openapi
from api.problems import install_problem_handlers
from api.rate_limits import RateLimitMiddleware
from api.request_limits import RequestLimitsMiddleware
from api.routers import (
    admin_customers,
    admin_esims,
    admin_invoices,
    admin_limits,
    admin_notifications,
    admin_orders,
    admin_pricing,
    admin_reconciliation,
    admin_reports,
    admin_statements,
    admin_vendors,
    auth,
    catalogue,
    codec,
    customer_account,
    esims,
    health,
    meta,
    orders,
    topups,
    vendor_account,
    vendor_esims,
    vendor_invoices,
    vendor_orders,
    vendor_topup_esims,
    vendor_topups,
    vendor_usage,
    vendor_webhooks,
    webhooks,
)
from api.security_headers import install_security_headers
from api.traffic import start_traffic_controls, stop_traffic_controls
from api.usage import UsageMiddleware
from ttelgo import temporal
from ttelgo.catalogue.snapshot import CatalogueCache
from ttelgo.db import create_engine, session_factory
from ttelgo.observability import configure_logging
from ttelgo.payments import StripeGateway
from ttelgo.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = (settings or get_settings()).resolved()
    configure_logging(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        assert settings.database_url and settings.stripe_secret_key
        app.state.engine = create_engine(settings.database_url, pool_size=settings.db_pool_size)
        app.state.sessions = session_factory(app.state.engine)
        app.state.catalogue_cache = CatalogueCache(app.state.sessions)
        # Lazy: the API starts (and /readyz explains) even while Temporal is still coming up.
        app.state.temporal = await temporal.connect(settings, lazy=True)
        app.state.stripe = StripeGateway(settings.stripe_secret_key, settings.stripe_api_base)
        await start_traffic_controls(app, settings)
        try:
            yield
        finally:
            await stop_traffic_controls(app)
            await app.state.stripe.aclose()
            await app.state.engine.dispose()

    docs = not settings.is_production if settings.api_docs_enabled is None else settings.api_docs_enabled
    app = FastAPI(
        title="TTelGo API",
        version="0.1.0",
        summary="eSIM data bundles for travellers and resellers",
        lifespan=lifespan,
        docs_url=None,  # api.docs serves the docs pages, with their assets
        redoc_url=None,
        **({} if docs else {"openapi_url": None}),
    )
    app.state.settings = settings
    app.state.metrics_registry = CollectorRegistry()
    app.state.business_metrics = BusinessMetrics(
        app.state.metrics_registry, settings.backlog_metrics_cache_seconds
    )
    install_problem_handlers(app)
    install_openapi(app)
    if docs:
        install_docs(app)
    install_security_headers(app, hsts=settings.is_production)
    app.add_middleware(ControlCharacterGuard)  # innermost: a body-size limit outside it applies first
    app.add_middleware(ClientAddressMiddleware)
    app.add_middleware(
        RequestLimitsMiddleware,
        max_body_bytes=settings.max_request_body_bytes,
        read_timeout_s=settings.request_read_timeout_seconds,
    )
    app.add_middleware(RateLimitMiddleware)
    app.add_middleware(UsageMiddleware)  # outside the limits: refused calls are usage too
    app.add_middleware(MetricsMiddleware, metrics=HttpMetrics(app.state.metrics_registry))
    install_cors(app, settings.cors_allowed_origins)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(codec.CodecCors, settings=settings)  # outermost: the Temporal UI's own CORS
    routers = (
        # First: a request is matched against every route included before the one that takes it, and
        # webhooks come in bursts. No other route's path starts with theirs, so no match changes.
        webhooks.router,
        health.router,
        meta.router,
        auth.router,
        catalogue.router,
        orders.router,
        esims.router,
        topups.router,
        customer_account.router,
        vendor_orders.router,
        vendor_esims.router,
        vendor_topup_esims.router,
        vendor_account.router,
        vendor_webhooks.router,
        vendor_topups.router,
        vendor_usage.router,
        admin_orders.router,
        admin_esims.router,
        admin_vendors.router,
        admin_statements.router,
        admin_customers.router,
        admin_reconciliation.router,
        admin_notifications.router,
        admin_limits.router,
        admin_reports.router,
        admin_pricing.router,
        admin_invoices.router,
        vendor_invoices.router,
        codec.router,
    )
    for router in routers:
        app.include_router(router)
    return app
