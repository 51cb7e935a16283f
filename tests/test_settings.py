"""Settings: stand-ins outside production, a clear stop in production when something is missing."""

from __future__ import annotations

import pytest

from tests.conftest import make_settings
from ttelgo.settings import LOCALSTRIPE_SECRET_KEY, ConfigurationError, Settings


def test_unset_services_resolve_to_local_stand_ins() -> None:
    s = make_settings(
        postgres_port=6000, temporal_port=7000, localstripe_port=8000, esimgo_sim_port=9000
    ).resolved()
    assert s.database_url == "postgresql+asyncpg://postgres@127.0.0.1:6000/ttelgo"
    assert s.temporal_address == "127.0.0.1:7000"
    assert s.stripe_api_base == "http://127.0.0.1:8000"
    assert s.stripe_secret_key == LOCALSTRIPE_SECRET_KEY
    assert s.esimgo_api_url == "http://127.0.0.1:9000/v2.4"


def test_configured_services_are_kept() -> None:
    s = make_settings(stripe_secret_key="sk_test_real", temporal_address="temporal.internal:7233").resolved()
    assert s.stripe_api_base is None, "a real Stripe key must talk to real Stripe, not localstripe"
    assert s.temporal_address == "temporal.internal:7233"


def test_production_names_every_missing_setting() -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        make_settings(ttelgo_env="production", database_url="postgresql://db/ttelgo").resolved()
    message = str(excinfo.value)
    for name in ("TEMPORAL_ADDRESS", "ESIMGO_API_KEY", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"):
        assert name in message
    assert "DATABASE_URL" not in message


def test_service_env_round_trips_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    original = make_settings(api_port=8123, temporal_task_queue="q1").resolved()
    for key, value in original.service_env().items():
        monkeypatch.setenv(key, value)
    child = Settings(_env_file=None)  # type: ignore[call-arg]
    assert child.api_port == 8123
    assert child.temporal_task_queue == "q1"
    assert child.database_url == original.database_url
    assert child.data_dir == original.data_dir


def test_supplier_timings_that_would_lose_money_are_refused() -> None:
    with pytest.raises(ValueError, match="ESIMGO_TIMEOUT_SECONDS must be below 60"):
        make_settings(esimgo_timeout_seconds=60)
    with pytest.raises(ValueError, match="ESIMGO_COMMIT_DELAY_SECONDS must be under half"):
        make_settings(esimgo_commit_delay_seconds=900, supplier_retry_budget_minutes=30)
    assert make_settings(esimgo_commit_delay_seconds=899).esimgo_commit_delay_seconds == 899


def test_production_refuses_to_start_without_smtp_settings() -> None:
    ready = {
        "ttelgo_env": "production",
        "database_url": "postgresql://db/ttelgo",
        "temporal_address": "temporal:7233",
        "esimgo_api_url": "https://api.esim-go.com/v2.4",
        "esimgo_api_key": "k",
        "stripe_secret_key": "sk_live_x",
        "stripe_webhook_secret": "whsec_x",
    }
    with pytest.raises(ConfigurationError) as excinfo:
        make_settings(**ready).resolved()
    assert "SMTP_HOST" in str(excinfo.value) and "MAIL_FROM" in str(excinfo.value)
    configured = make_settings(**ready, smtp_host="smtp.example.com", mail_from="TTelGo <x@example.com>")
    assert configured.resolved().smtp_host == "smtp.example.com"


def test_unset_smtp_resolves_to_the_dev_mail_server() -> None:
    s = make_settings(smtp_port=2525).resolved()
    assert (s.smtp_host, s.smtp_port) == ("127.0.0.1", 2525) and s.mail_from
