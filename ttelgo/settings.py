"""Every setting the project reads, from the environment, in one place.

An external service whose URL is unset is replaced by its local stand-in (see `ttelgo.sandbox`);
`resolved()` fills those URLs in from the ports below. In production mode (`TTELGO_ENV=production`)
there are no stand-ins: a missing secret or endpoint stops start-up with the list of what is missing.
"""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SEARCH_ATTRIBUTES: dict[str, str] = {
    "OrderId": "Keyword",
    "OrderStatus": "Keyword",
    "Channel": "Keyword",
    "VendorId": "Keyword",
    "BundleName": "Keyword",
}
"""Search attributes the workflows upsert; registered on the dev server and in tests."""

LOCALSTRIPE_SECRET_KEY = "sk_test_ttelgo_localstripe"
ESIMGO_SIMULATOR_API_KEY = "sim-test-key"
DEV_MAIL_FROM = "TTelGo <no-reply@ttelgo.localhost>"
SUPPLIER_STEP_LIMIT_S = (
    60  # the order workflow's start-to-close limit on one supplier call (workflows/order.py)
)


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class ConfigurationError(RuntimeError):
    """A setting is missing or wrong; the message says which and how to fix it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    ttelgo_env: Environment = Environment.DEVELOPMENT

    # External services: None means "use the local stand-in" outside production.
    database_url: str | None = None
    temporal_address: str | None = None
    temporal_namespace: str = "default"
    temporal_task_queue: str = "ttelgo"
    # Provisioning calls to eSIM Go run here; the server-side rate limit spans every worker process.
    esimgo_task_queue: str = "ttelgo-esimgo"
    esimgo_api_url: str | None = None
    esimgo_api_key: str | None = None
    # The supplier allows 10 requests/s per client; each process keeps under this.
    esimgo_max_requests_per_second: float = Field(default=8.0, ge=0)
    # Orders waiting for eSIM Go are bought together, a line per order in one supplier order (≤ 5 bundles).
    esimgo_batch_orders: bool = True
    # How long one eSIM Go call may take before we stop waiting for its answer.
    esimgo_timeout_seconds: float = Field(default=15, gt=0)
    # The longest eSIM Go may still carry out an order call after we stopped waiting for its answer: a
    # retry looks for that order only after this, instead of buying a second time.
    esimgo_commit_delay_seconds: float = Field(default=120, ge=0)
    # How long an order keeps retrying transient supplier faults (outages, 429s) before it gives up.
    supplier_retry_budget_minutes: float = Field(default=30, gt=0)
    stripe_secret_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None

    jwt_secret: str | None = None
    jwt_access_ttl_minutes: int = Field(default=30, ge=1)
    jwt_refresh_ttl_days: int = Field(default=30, ge=1)
    ttelgo_admin_email: str = "admin@example.com"
    ttelgo_admin_password: str | None = None

    # Where things listen; every one of them can be moved.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    postgres_port: int = 5433
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    localstripe_port: int = 8420
    esimgo_sim_port: int = 8090
    worker_metrics_port: int = 9464
    # How long a creating request (order, top-up, refund) waits for its workflow's first answer (the money
    # check) before it answers 503 + Retry-After: "started, not confirmed; retry with the same key".
    api_accept_timeout_seconds: float = Field(default=30, gt=0)

    catalogue_sync_minutes: int = Field(default=15, ge=1)
    # How long a card order or top-up waits for its payment before the PaymentIntent is canceled.
    payment_window_minutes: float = Field(default=30, gt=0)
    topup_min_minor: int = Field(default=1_000, gt=0)
    topup_max_minor: int = Field(default=1_000_000, gt=0)
    # A pending card refund is read back this often when no webhook comes; a succeeded one is watched
    # this long for a late failure (which is then reversed in our records).
    refund_poll_seconds: int = Field(default=60, gt=0)
    refund_watch_hours: float = Field(default=168, ge=0)
    # Reconciliation (the `reconciliation` Temporal Schedule): how often it runs, how far back it compares
    # eSIM Go orders and Stripe payments with ours, and how old a discrepancy must be before it counts
    # (a younger one may be an order whose workflow is still between the supplier's answer and its record).
    reconciliation_minutes: int = Field(default=60, ge=1)
    reconciliation_window_minutes: int = Field(default=1440, ge=1, le=43_200)
    reconciliation_grace_minutes: float = Field(default=10, ge=0)

    # E-mail (the `notifications` outbox, sent by the Notification workflow). Outside production an unset
    # SMTP_HOST means the dev stack's local SMTP server on SMTP_PORT, which writes .eml files to
    # <data dir>/mail; production needs SMTP_HOST and MAIL_FROM.
    smtp_host: str | None = None
    smtp_port: int = Field(default=8025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = Field(default=30, gt=0)
    mail_from: str | None = None
    # How long a message keeps being retried (SMTP down, 4xx answers) before it is marked FAILED.
    mail_retry_budget_minutes: float = Field(default=360, gt=0)

    # Vendor webhooks (the WebhookDelivery workflow): each attempt's time limit, and how long an event keeps
    # being retried (with backoff) before its delivery is marked FAILED. WEBHOOK_PUBLIC_ONLY (default: on
    # in production) refuses URLs that are not https or do not resolve to public addresses.
    webhook_timeout_seconds: float = Field(default=10, gt=0, le=30)
    webhook_retry_window_hours: float = Field(default=72, gt=0, le=720)
    webhook_first_backoff_seconds: float = Field(default=30, gt=0)  # doubled per failure, up to an hour
    webhook_public_only: bool | None = None

    # Temporal payload encryption (ttelgo.codec): `kid:base64key,...` with 32-byte keys; the first encrypts,
    # every one decrypts (rotate by putting a new key first). Required in production; `ttelgo dev` generates
    # one. The Temporal UI's codec server is POST /codec/decode on the API; TEMPORAL_UI_ORIGINS (comma-
    # separated) are the browser origins allowed to call it (unset: the dev UI on TEMPORAL_UI_PORT).
    temporal_payload_keys: str | None = None
    temporal_ui_origins: str | None = None

    # Logins (ttelgo.auth): every refresh rotates the refresh token (each lives JWT_REFRESH_TTL_DAYS).
    # After LOGIN_LOCKOUT_THRESHOLD failed logins in a row an e-mail is locked (known account or not),
    # first for LOGIN_LOCKOUT_BASE_SECONDS, doubled per further failure up to LOGIN_LOCKOUT_MAX_SECONDS;
    # a success resets the count, and failures older than LOGIN_FAILURE_WINDOW_HOURS are forgotten.
    login_lockout_threshold: int = Field(default=5, ge=1)
    login_lockout_base_seconds: float = Field(default=30, gt=0)
    login_lockout_max_seconds: float = Field(default=3600, gt=0)
    login_failure_window_hours: float = Field(default=24, gt=0)
    # Password reset e-mails: the token's lifetime, and the front end's page that takes `?token=` (unset:
    # the e-mail gives the token alone, for POST /api/v1/auth/password-reset/confirm).
    password_reset_ttl_minutes: float = Field(default=30, gt=0, le=1440)
    password_reset_url: str | None = None

    # Rate limits (ttelgo.ratelimit), in the `limits` notation ("300/minute", "30/10 seconds"). Counted in
    # RATE_LIMIT_STORAGE_URI, shared by every API process: unset means our database (an UNLOGGED table),
    # `memory://` one process only (refused in production), `redis://…` limits' Redis storage (needs the
    # `coredis` package). Per vendor (its keys and team together; admins override it per vendor), per
    # customer or staff token, per client IP without credentials, and per IP on logins, registration and
    # password reset. RATE_LIMIT_CACHE_SECONDS: how long a process trusts what it read about an API key.
    rate_limit_enabled: bool = True
    rate_limit_storage_uri: str | None = None
    rate_limit_vendor: str = "300/minute"
    rate_limit_user: str = "300/minute"
    rate_limit_anonymous: str = "600/minute"
    rate_limit_auth: str = "30/minute"
    rate_limit_cache_seconds: float = Field(default=30, ge=0)
    # Card orders a customer may leave unpaid at once (and card top-ups a vendor may leave open).
    max_open_unpaid_orders: int = Field(default=5, ge=1)
    # The `housekeeping` schedule (hourly) deletes API usage rows, handled inbound webhook events and sent
    # e-mails older than these; expired idempotency keys, sessions, reset codes and rate-limit counters go too.
    api_usage_retention_days: int = Field(default=90, ge=1)
    webhook_event_retention_days: int = Field(default=90, ge=1)
    notification_retention_days: int = Field(default=90, ge=1)

    # HTTP hygiene (api.request_limits, api.security_headers, api.serve). A body over MAX_REQUEST_BODY_BYTES
    # is refused with 413 as it arrives; one not complete REQUEST_READ_TIMEOUT_SECONDS after its request
    # head is answered 408 and its connection closed. The server drops idle keep-alive connections after
    # HTTP_KEEP_ALIVE_SECONDS and refuses request heads over HTTP_MAX_HEADER_BYTES.
    max_request_body_bytes: int = Field(default=1_048_576, ge=1024)
    request_read_timeout_seconds: float = Field(default=30, gt=0)
    http_keep_alive_seconds: int = Field(default=5, ge=1)
    http_max_header_bytes: int = Field(default=16_384, ge=4096)
    # Proxies (comma-separated addresses or networks) whose X-Forwarded-For / X-Forwarded-Proto name the
    # client: per-IP rate limits and audit rows then see the caller, not the proxy. Others' are ignored.
    trusted_proxies: str = "127.0.0.1,::1"
    # Browser origins allowed to call the API (comma-separated, e.g. `https://app.ttelgo.com`); empty: no CORS.
    cors_allowed_origins: str = ""
    # /docs, /redoc and /openapi.json; unset: served outside production only.
    api_docs_enabled: bool | None = None
    # When set, GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>`; unset: open outside production,
    # refused (401) in production.
    metrics_token: str | None = None

    # Observability (ttelgo.business_metrics, ttelgo.observability). The worker's Prometheus endpoint
    # listens on WORKER_METRICS_HOST:WORKER_METRICS_PORT (0.0.0.0 in a container, for Prometheus to reach).
    # The `supplier-balance` schedule reads the eSIM Go balance every SUPPLIER_BALANCE_MINUTES; below
    # SUPPLIER_LOW_BALANCE_MINOR (minor units of the supplier's currency; unset: never) it logs a warning
    # and sets ttelgo_supplier_balance_low. BACKLOG_METRICS_CACHE_SECONDS: how long the API reuses the
    # backlog counts it read for /metrics. LOG_FORMAT: `text` (one readable line) or `json` (one object a line).
    worker_metrics_host: str = "127.0.0.1"
    supplier_balance_minutes: int = Field(default=15, ge=1)
    supplier_low_balance_minor: int | None = Field(default=None, ge=0)
    backlog_metrics_cache_seconds: float = Field(default=10, ge=0)
    log_format: Literal["text", "json"] = "text"

    # POSTPAID invoices (ttelgo.invoicing): a vendor with an invoice unpaid INVOICE_GRACE_DAYS after its due
    # date (the vendor's payment_terms_days after issue) cannot place new orders until it is settled.
    invoice_grace_days: int = Field(default=7, ge=0)

    # eSIM read models (api/esim_views.py): a detail read whose copy was read from eSIM Go more than
    # ESIM_FRESHNESS_SECONDS ago reads it again (one EsimRefresh workflow per eSIM, `esim-refresh-{esim id}`, on the supplier queue)
    # and waits up to ESIM_REFRESH_WAIT_SECONDS for it; past that (supplier down) the stored copy answers.
    esim_freshness_seconds: int = Field(default=60, ge=1)
    esim_refresh_wait_seconds: float = Field(default=3, gt=0, le=30)

    # The API's PostgreSQL pool (ttelgo.db): DB_POOL_SIZE connections kept open, as many again for bursts.
    # Size it to the concurrent requests one process serves: a connection opened past the pool is closed
    # again on return, and opening one costs more than most requests.
    db_pool_size: int = Field(default=20, ge=1, le=200)

    data_dir: Path = Field(default=Path(".ttelgo"), alias="TTELGO_DATA_DIR")
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _supplier_timings_fit(self) -> Settings:
        """The supplier timings only protect money in this order: a call ends before its step's own limit,
        and a call in doubt is looked for well within the order's retry budget."""
        problems = []
        if self.esimgo_timeout_seconds >= SUPPLIER_STEP_LIMIT_S:
            problems.append(f"ESIMGO_TIMEOUT_SECONDS must be below {SUPPLIER_STEP_LIMIT_S}")
        if self.esimgo_commit_delay_seconds >= self.supplier_retry_budget_minutes * 60 / 2:
            problems.append("ESIMGO_COMMIT_DELAY_SECONDS must be under half of SUPPLIER_RETRY_BUDGET_MINUTES")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def supplier_retry_budget_s(self) -> int:
        return round(self.supplier_retry_budget_minutes * 60)

    @property
    def is_production(self) -> bool:
        return self.ttelgo_env is Environment.PRODUCTION

    @property
    def webhooks_public_only(self) -> bool:
        return self.is_production if self.webhook_public_only is None else self.webhook_public_only

    @property
    def webhook_retry_window_s(self) -> int:
        return round(self.webhook_retry_window_hours * 3600)

    def missing_for_production(self) -> list[str]:
        required = {
            "DATABASE_URL": self.database_url,
            "TEMPORAL_ADDRESS": self.temporal_address,
            "ESIMGO_API_URL": self.esimgo_api_url,
            "ESIMGO_API_KEY": self.esimgo_api_key,
            "STRIPE_SECRET_KEY": self.stripe_secret_key,
            "STRIPE_WEBHOOK_SECRET": self.stripe_webhook_secret,
            "JWT_SECRET": self.jwt_secret,
            "SMTP_HOST": self.smtp_host,
            "MAIL_FROM": self.mail_from,
            "TEMPORAL_PAYLOAD_KEYS": self.temporal_payload_keys,
        }
        return [name for name, value in required.items() if not value]

    def resolved(self) -> Settings:
        """A copy with every unset service pointed at its local stand-in.

        Raises ConfigurationError in production mode instead, naming each missing setting.
        """
        if self.is_production:
            missing = self.missing_for_production()
            if missing:
                raise ConfigurationError(
                    "production mode (TTELGO_ENV=production) needs these settings, which are unset: "
                    + ", ".join(missing)
                )
            return self
        defaults = {
            "database_url": f"postgresql+asyncpg://postgres@127.0.0.1:{self.postgres_port}/ttelgo",
            "temporal_address": f"127.0.0.1:{self.temporal_port}",
            "esimgo_api_url": f"http://127.0.0.1:{self.esimgo_sim_port}/v2.4",
            "esimgo_api_key": ESIMGO_SIMULATOR_API_KEY,
            "stripe_api_base": f"http://127.0.0.1:{self.localstripe_port}"
            if not self.stripe_secret_key
            else None,
            "stripe_secret_key": LOCALSTRIPE_SECRET_KEY,
            "smtp_host": "127.0.0.1",
            "mail_from": DEV_MAIL_FROM,
        }
        update = {name: value for name, value in defaults.items() if getattr(self, name) is None}
        return self.model_copy(update=update)

    def service_env(self) -> dict[str, str]:
        """The environment that hands these (resolved) settings to a child process."""
        env: dict[str, str] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None:
                continue
            key = (field.alias or name).upper()
            env[key] = str(value.value if isinstance(value, StrEnum) else value)
        return env


@lru_cache
def get_settings() -> Settings:
    return Settings()
