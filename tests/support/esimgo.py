"""The eSIM Go simulator as the rest of the suite uses it: one per session, reset for each test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from ttelgo.esimgo import EsimGoClient

SIM_API_KEY = "suite-sim-key"


@dataclass
class SimHandle:
    base: str
    admin: httpx.Client  # the /_sim control API

    @property
    def api_url(self) -> str:
        return f"{self.base}/v2.4"

    def client(self, **kwargs: Any) -> EsimGoClient:
        """An anti-corruption client for this simulator, unpaced unless asked (tests control the rate)."""
        return EsimGoClient(self.api_url, SIM_API_KEY, **{"max_requests_per_second": 0, **kwargs})

    def faults(self, **endpoints: dict[str, Any]) -> None:
        """faults(**{"POST /orders": {"fail_next": 2}}) — keys are the simulator's route templates."""
        response = self.admin.put("/faults", json={"endpoints": endpoints})
        response.raise_for_status()

    def stats(self) -> dict[str, Any]:
        return self.admin.get("/stats").json()

    def down(self) -> None:
        """Every supplier endpoint answers 503 until the next reset: an outage."""
        self.admin.put(
            "/faults", json={"default": {"error_rate": 1.0, "error_status": 503}}
        ).raise_for_status()
