"""Stateful eSIM Go v2.4 API simulator for contract tests and local runs (see app.create_app)."""

from .app import create_app
from .config import SimConfig
from .faults import FaultRule, FaultSettings

__all__ = ["FaultRule", "FaultSettings", "SimConfig", "create_app"]
