"""/_sim admin routes: drive the simulator from tests (faults, stats, reset, balance, clock, usage, callbacks).

No API key and no rate limit: the simulator listens on loopback and this is its control panel.
"""

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request

from . import api, views
from .errors import error_response
from .faults import FaultSettings
from .guard import endpoint_templates
from .runtime import Simulator
from .schemas import (
    BalanceUpdate,
    BundleStateUpdate,
    CallbackUrlUpdate,
    ClockUpdate,
    ProfileStatusUpdate,
    RateLimitUpdate,
    UsageRequest,
)

router = APIRouter()


def _sim(request: Request) -> Simulator:
    return request.app.state.sim


KNOWN_ENDPOINTS: frozenset[str] = frozenset(endpoint_templates(api.router))


def _faults_view(sim: Simulator) -> dict[str, Any]:
    return {**sim.faults.settings.model_dump(), "known_endpoints": sorted(KNOWN_ENDPOINTS)}


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/faults")
async def get_faults(request: Request) -> dict[str, Any]:
    return _faults_view(_sim(request))


@router.put("/faults")
async def put_faults(request: Request, settings: FaultSettings) -> Any:
    unknown = sorted(set(settings.endpoints) - KNOWN_ENDPOINTS)
    if unknown:
        # A typo in a key would silently inject nothing; refuse it and list the valid templates.
        return error_response(422, f"unknown endpoint key(s) {unknown}; known: {sorted(KNOWN_ENDPOINTS)}")
    _sim(request).faults.replace(settings)
    return _faults_view(_sim(request))


@router.delete("/faults")
async def delete_faults(request: Request) -> dict[str, Any]:
    _sim(request).faults.clear()
    return _faults_view(_sim(request))


@router.get("/stats")
async def get_stats(request: Request) -> dict[str, Any]:
    return _sim(request).stats.snapshot()


@router.delete("/stats")
async def delete_stats(request: Request) -> dict[str, Any]:
    sim = _sim(request)
    sim.stats.reset()
    return sim.stats.snapshot()


@router.post("/reset")
async def reset(request: Request) -> dict[str, str]:
    _sim(request).reset()
    return {"status": "reset"}


@router.get("/organisation/balance")
async def get_balance(request: Request) -> dict[str, Any]:
    org = _sim(request).state.org
    return {"balance": float(org.balance), "currency": org.currency}


@router.put("/organisation/balance")
async def put_balance(request: Request, body: BalanceUpdate) -> dict[str, Any]:
    sim = _sim(request)
    sim.state.set_balance(body.balance)
    return {"balance": float(sim.state.org.balance), "currency": sim.state.org.currency}


@router.put("/callback-url")
async def put_callback_url(request: Request, body: CallbackUrlUpdate) -> dict[str, str | None]:
    sim = _sim(request)
    sim.callback_url = body.url or None
    return {"url": sim.callback_url}


@router.put("/rate-limit")
async def put_rate_limit(request: Request, body: RateLimitUpdate) -> dict[str, int]:
    sim = _sim(request)
    sim.limiter.reset(body.per_second)
    return {"per_second": sim.limiter.per_second}


@router.get("/clock")
async def get_clock(request: Request) -> dict[str, object]:
    return _sim(request).clock.view()


@router.put("/clock")
async def put_clock(request: Request, body: ClockUpdate) -> dict[str, object]:
    """Moves the simulator's now: bundles started from here on run from (and expire at) that time."""
    clock = _sim(request).clock
    clock.offset = timedelta(seconds=body.offset_seconds)
    return clock.view()


@router.get("/callbacks")
async def get_callbacks(request: Request) -> list[dict[str, Any]]:
    return [{**d.summary(), "url": d.url, "payload": d.payload} for d in _sim(request).callback_log]


@router.post("/esims/{iccid}/usage")
async def post_usage(request: Request, iccid: str, body: UsageRequest) -> dict[str, Any]:
    sim = _sim(request)
    result = sim.state.consume(iccid, body.bytes)
    deliveries = await sim.deliver(result.events)
    return {
        "iccid": iccid,
        "consumed": result.consumed,
        "bundles": views.esim_bundles(sim.state.esim(iccid).assignments)["bundles"],
        "callbacks": [d.summary() for d in deliveries],
    }


@router.put("/esims/{iccid}/profile-status")
async def put_profile_status(request: Request, iccid: str, body: ProfileStatusUpdate) -> dict[str, Any]:
    esim = _sim(request).state.esim(iccid)
    esim.profile_status = body.profile_status
    return views.esim_details(esim)


@router.put("/esims/{iccid}/assignments/{assignment_id}")
async def put_assignment_state(
    request: Request, iccid: str, assignment_id: str, body: BundleStateUpdate
) -> dict[str, Any]:
    assignment = _sim(request).state.find_assignment(iccid, assignment_id)
    assignment.state = body.bundle_state  # e.g. force "expired"/"lapsed" without waiting days
    return views.assignment(assignment)
