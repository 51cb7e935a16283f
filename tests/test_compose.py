"""docker-compose.yml cannot run here (no Docker engine); check it parses and only passes real settings."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ttelgo.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _default_or_given(value: str) -> str:
    found = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
    return found.group(1) if found else "x"


def setting_names() -> set[str]:
    return {(field.alias or name).upper() for name, field in Settings.model_fields.items()}


def test_compose_parses_and_has_the_production_topology() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert {"postgres", "temporal", "temporal-ui", "api", "worker"} <= set(compose["services"])
    for service in ("api", "worker", "migrate", "temporal-setup"):
        assert compose["services"][service]["build"] == "."
    assert (ROOT / "Dockerfile").exists()


def test_our_services_receive_only_settings_that_exist() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    known = setting_names()
    for service in ("api", "worker", "migrate", "temporal-setup"):
        env = compose["services"][service]["environment"]
        unknown = set(env) - known
        assert not unknown, f"{service} passes settings that ttelgo does not read: {unknown}"
        assert env["TTELGO_ENV"] == "production"


def test_production_settings_in_compose_are_complete() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    # A `${NAME:-default}` stands for its default, anything else for a value the operator provides.
    env = {k: _default_or_given(str(v)) for k, v in compose["services"]["api"]["environment"].items()}
    settings = Settings(
        _env_file=None, **{k.lower(): v for k, v in env.items() if k != "TTELGO_ENV"}, ttelgo_env="production"
    )  # type: ignore[call-arg]
    assert settings.missing_for_production() == []


def test_api_and_worker_start_only_after_temporal_is_set_up() -> None:
    """Without the search attributes every order start is refused, so the setup job gates both."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    setup = services["temporal-setup"]
    assert setup["command"][:3] == ["ttelgo", "temporal", "setup"]
    assert "temporal" in setup["depends_on"]
    assert setup["environment"] == services["migrate"]["environment"]  # the same settings as the others
    for service in ("api", "worker"):
        gate = services[service]["depends_on"]["temporal-setup"]
        assert gate == {"condition": "service_completed_successfully"}, service
