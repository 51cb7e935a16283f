"""Fault injection: per-endpoint rules, settable at run time, decided (seeded RNG) before any state change."""

import random
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from .errors import RETRYABLE_MESSAGES

NO_BUNDLES_LEFT_MESSAGE = "The user does not have any available Bundles left"
ORDER_ENDPOINT = "POST /orders"


class FaultRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    error_rate: float = Field(0.0, ge=0, le=1)
    error_status: int = Field(500, ge=400, le=599)
    error_message: str | None = None
    latency_ms: int = Field(0, ge=0)
    processing_rate: float = Field(0.0, ge=0, le=1)
    retry_after_s: int = Field(1, ge=0)
    timeout_rate: float = Field(0.0, ge=0, le=1)
    timeout_s: float = Field(30.0, ge=0)
    # When true the request is still processed after the hang: the "client timed out but the supplier
    # placed the order anyway" case that reconciliation code has to survive.
    timeout_commits: bool = False
    no_bundles_left: bool = False
    fail_next: int = Field(0, ge=0)


class FaultSettings(BaseModel):
    """`endpoints` keys are route templates ("GET /esims/{iccid}"); an endpoint rule replaces `default`."""

    model_config = ConfigDict(extra="forbid")

    default: FaultRule = Field(default_factory=FaultRule)
    endpoints: dict[str, FaultRule] = Field(default_factory=dict)


class FaultKind(StrEnum):
    ERROR = "error"
    PROCESSING = "processing"
    TIMEOUT = "timeout"
    NO_BUNDLES_LEFT = "no_bundles_left"


@dataclass
class FaultDecision:
    delay_s: float = 0.0
    kind: FaultKind | None = None
    status: int = 200
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0
    proceed_after_hang: bool = False


def _error(rule: FaultRule, status: int | None = None) -> tuple[int, str, dict[str, str]]:
    status = status or rule.error_status
    message = rule.error_message or RETRYABLE_MESSAGES.get(status, "Internal Server Error (injected fault)")
    headers = {"Retry-After": str(rule.retry_after_s)} if status in RETRYABLE_MESSAGES else {}
    return status, message, headers


class FaultInjector:
    def __init__(self, settings: FaultSettings, seed: int) -> None:
        self._initial = settings.model_copy(deep=True)
        self._seed = seed
        self.reset()

    def reset(self) -> None:
        self.settings = self._initial.model_copy(deep=True)
        self._rng = random.Random(f"{self._seed}:faults")

    def replace(self, settings: FaultSettings) -> None:
        self.settings = settings.model_copy(deep=True)

    def clear(self) -> None:
        self.settings = FaultSettings()

    def rule_for(self, endpoint: str) -> FaultRule:
        return self.settings.endpoints.get(endpoint, self.settings.default)

    def _draw(self, rate: float) -> bool:
        # Only consume randomness for active rates, so enabling one rule does not shift the others' draws.
        return rate > 0 and self._rng.random() < rate

    def decide(self, endpoint: str) -> FaultDecision:
        rule = self.rule_for(endpoint)
        decision = FaultDecision(delay_s=rule.latency_ms / 1000)
        if rule.fail_next > 0:
            rule.fail_next -= 1  # mutates the stored rule, so GET /_sim/faults shows what is left
            decision.kind = FaultKind.ERROR
            decision.status, decision.message, decision.headers = _error(rule)
        elif rule.no_bundles_left and endpoint == ORDER_ENDPOINT:
            decision.kind = FaultKind.NO_BUNDLES_LEFT
            decision.status, decision.message = 403, NO_BUNDLES_LEFT_MESSAGE
        elif self._draw(rule.timeout_rate):
            decision.kind = FaultKind.TIMEOUT
            decision.hang_s = rule.timeout_s
            decision.proceed_after_hang = rule.timeout_commits
            decision.status, decision.message = 504, "Gateway Timeout"
        elif self._draw(rule.processing_rate):
            decision.kind = FaultKind.PROCESSING
            decision.status, decision.message, decision.headers = _error(rule, 503)
        elif self._draw(rule.error_rate):
            decision.kind = FaultKind.ERROR
            decision.status, decision.message, decision.headers = _error(rule)
        return decision
