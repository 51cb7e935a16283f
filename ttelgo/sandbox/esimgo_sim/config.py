"""Simulator configuration: a pydantic model, filled from keyword arguments and/or ESIMGO_SIM_* variables."""

import os
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .faults import FaultSettings

ENV_FIELDS: dict[str, str] = {
    "ESIMGO_SIM_API_KEY": "api_key",
    "ESIMGO_SIM_CALLBACK_URL": "callback_url",
    "ESIMGO_SIM_RATE_LIMIT": "rate_limit_per_second",
    "ESIMGO_SIM_BALANCE": "initial_balance",
    "ESIMGO_SIM_SEED": "seed",
    "ESIMGO_SIM_STATE_DIR": "state_dir",
}
ENV_FAULTS = "ESIMGO_SIM_FAULTS"


class SimConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_key: str = Field("sim-test-key", min_length=1)
    initial_balance: Decimal = Field(Decimal("100000"), ge=0)
    rate_limit_per_second: int = Field(10, ge=0, description="0 disables the limit")
    async_order_threshold: int = Field(5, ge=0, description="larger orders complete later")
    async_completion_delay_s: float = Field(1.0, ge=0)
    callback_url: str | None = None
    callback_attempts: int = Field(3, ge=1)
    callback_backoff_s: float = Field(0.1, ge=0)
    callback_timeout_s: float = Field(5.0, gt=0)
    faults: FaultSettings = Field(default_factory=FaultSettings)
    seed: int = 42
    state_dir: str | None = Field(
        None,
        description="a folder kept across starts; each start then issues identifiers never issued before",
    )
    organisation_name: str = "TTelGo Sandbox Ltd"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "SimConfig":
        """Read ESIMGO_SIM_*; keyword overrides (e.g. CLI options) win over it; None means not given."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {field: env[var] for var, field in ENV_FIELDS.items() if env.get(var)}
        if env.get(ENV_FAULTS):
            values["faults"] = FaultSettings.model_validate_json(env[ENV_FAULTS])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
