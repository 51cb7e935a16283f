"""The anti-corruption client against the simulator: every endpoint it uses, and how failures classify."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.esimgo import SimHandle
from ttelgo.esimgo import PermanentReason, SupplierPermanentError, SupplierRetryableError
from ttelgo.esimgo.client import EsimGoClient


def luhn_ok(number: str) -> bool:
    digits = [int(d) for d in number][::-1]
    return (
        sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(digits)) % 10 == 0
    )


async def test_catalogue_pages_and_bundle_lookup(esimgo_sim: SimHandle) -> None:
    client = esimgo_sim.client()
    try:
        first = await client.list_catalogue(page=1, per_page=50)
        assert len(first.bundles) == 50 and first.page_count > 1 and first.rows > 1000
        everything = [b async for b in client.iter_catalogue(per_page=1000)]
        assert len(everything) == first.rows
        assert len({b.name for b in everything}) == first.rows
        french = await client.list_catalogue(countries=["FR"], per_page=200)
        assert french.bundles and all(any(c.iso == "FR" for c in b.countries) for b in french.bundles)

        bundle = await client.get_bundle("esim_1GB_7D_FR_V2")
        assert bundle.data_mb == 1000 and bundle.duration_days == 7 and not bundle.unlimited
        assert bundle.currency == "USD" and isinstance(bundle.price_minor, int) and bundle.price_minor > 0
        assert bundle.countries[0].iso == "FR" and bundle.regions == ("Europe",)
        assert any(b.unlimited and b.data_mb is None for b in everything)
    finally:
        await client.aclose()


async def test_order_flow_gives_installable_esims(esimgo_sim: SimHandle) -> None:
    client = esimgo_sim.client()
    try:
        before = await client.get_organisation()
        quote = await client.create_order("esim_1GB_7D_FR_V2", 2, validate_only=True)
        assert (await client.get_organisation()).balance_minor == before.balance_minor, (
            "validate charges nothing"
        )
        order = await client.create_order("esim_1GB_7D_FR_V2", 2)
        assert order.completed and order.quantity == 2 and len(order.esims) == 2
        assert order.total_minor == quote.total_minor
        assert (await client.get_organisation()).balance_minor == before.balance_minor - order.total_minor

        again = await client.get_order(order.reference)
        assert again.reference == order.reference and {e.iccid for e in again.esims} == {
            e.iccid for e in order.esims
        }
        installs = await client.get_assignments(order.reference)
        assert {e.iccid for e in installs} == {e.iccid for e in order.esims}
        for esim in installs:
            assert len(esim.iccid) in (19, 20) and luhn_ok(esim.iccid)
            assert esim.lpa == f"LPA:1${esim.smdp_address}${esim.matching_id}"
            assert esim.matching_id and esim.smdp_address

        profile = await client.get_esim(order.esims[0].iccid)
        assert profile.iccid == order.esims[0].iccid and profile.profile_status
        usage = await client.get_esim_bundles(order.esims[0].iccid)
        assert usage[0].name == "esim_1GB_7D_FR_V2" and usage[0].initial_bytes == 1_000_000_000

        await client.revoke_bundle(order.esims[0].iccid, "esim_1GB_7D_FR_V2")
        assert (await client.get_esim_bundles(order.esims[0].iccid))[0].state == "revoked"
        refunded = (await client.get_organisation()).balance_minor
        assert refunded == before.balance_minor - order.total_minor + order.total_minor // 2
    finally:
        await client.aclose()


async def test_large_orders_complete_asynchronously(esimgo_sim: SimHandle) -> None:
    client = esimgo_sim.client()
    try:
        order = await client.create_order("esim_1GB_7D_FR_V2", 6)
        assert not order.completed and order.esims == ()
        deadline = time.monotonic() + 10
        while not (await client.get_order(order.reference)).completed:
            assert time.monotonic() < deadline
        assert len(await client.get_assignments(order.reference)) == 6
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("endpoint", "rule", "status"),
    [
        ("GET /catalogue/bundle/{name}", {"fail_next": 1, "error_status": 500}, 500),
        ("GET /catalogue/bundle/{name}", {"fail_next": 1, "error_status": 502}, 502),
        ("GET /catalogue/bundle/{name}", {"processing_rate": 1.0, "retry_after_s": 3}, 503),
    ],
)
async def test_server_faults_are_retryable(
    esimgo_sim: SimHandle, endpoint: str, rule: dict, status: int
) -> None:
    esimgo_sim.faults(**{endpoint: rule})
    client = esimgo_sim.client()
    try:
        with pytest.raises(SupplierRetryableError) as excinfo:
            await client.get_bundle("esim_1GB_7D_FR_V2")
        assert excinfo.value.status == status
        if status == 503:
            assert excinfo.value.retry_after == 3
    finally:
        await client.aclose()


async def test_rate_limit_is_retryable_after_the_given_delay(esimgo_sim: SimHandle) -> None:
    esimgo_sim.admin.put("/rate-limit", json={"per_second": 2}).raise_for_status()
    client = esimgo_sim.client()
    try:
        with pytest.raises(SupplierRetryableError) as excinfo:
            for _ in range(5):
                await client.get_organisation()
        assert excinfo.value.status == 429 and excinfo.value.retry_after == 1
    finally:
        await client.aclose()


async def test_pacing_keeps_a_burst_under_the_rate_limit(esimgo_sim: SimHandle) -> None:
    esimgo_sim.admin.put("/rate-limit", json={"per_second": 10}).raise_for_status()
    client = esimgo_sim.client(max_requests_per_second=8)
    try:
        for _ in range(12):  # 12 calls at 8/s span two windows of the supplier's 10/s limit
            await client.get_organisation()
    finally:
        await client.aclose()
    assert esimgo_sim.stats()["rate_limited"] == 0


async def test_timeouts_are_retryable(esimgo_sim: SimHandle) -> None:
    esimgo_sim.faults(**{"GET /organisation": {"timeout_rate": 1.0, "timeout_s": 2.0}})
    client = EsimGoClient(
        esimgo_sim.api_url, "suite-sim-key", timeout=httpx.Timeout(0.3), max_requests_per_second=0
    )
    try:
        with pytest.raises(SupplierRetryableError, match="timed out"):
            await client.get_organisation()
    finally:
        await client.aclose()


async def test_unreachable_supplier_is_retryable() -> None:
    from ttelgo.sandbox.processes import free_port

    client = EsimGoClient(f"http://127.0.0.1:{free_port()}/v2.4", "k", max_requests_per_second=0)
    try:
        with pytest.raises(SupplierRetryableError, match="unreachable"):
            await client.get_organisation()
    finally:
        await client.aclose()


async def test_permanent_failures_say_why(esimgo_sim: SimHandle) -> None:
    client = esimgo_sim.client()
    try:
        with pytest.raises(SupplierPermanentError) as unknown:
            await client.create_order("esim_NOPE_V2", 1)
        assert unknown.value.reason is PermanentReason.UNKNOWN_BUNDLE

        esimgo_sim.faults(**{"POST /orders": {"no_bundles_left": True}})
        with pytest.raises(SupplierPermanentError) as stock:
            await client.create_order("esim_1GB_7D_FR_V2", 1)
        assert stock.value.reason is PermanentReason.NO_STOCK
        esimgo_sim.admin.delete("/faults").raise_for_status()

        esimgo_sim.admin.put("/organisation/balance", json={"balance": 0.5}).raise_for_status()
        with pytest.raises(SupplierPermanentError) as broke:
            await client.create_order("esim_1GB_7D_FR_V2", 1)
        assert broke.value.reason is PermanentReason.SUPPLIER_BALANCE_EXHAUSTED
        assert esimgo_sim.stats()["orders"]["transactions"] == 0, "failed orders must charge nothing"
    finally:
        await client.aclose()

    bad_key = EsimGoClient(esimgo_sim.api_url, "wrong-key", max_requests_per_second=0)
    try:
        with pytest.raises(SupplierPermanentError) as denied:
            await bad_key.get_organisation()
        assert denied.value.reason is PermanentReason.BAD_API_KEY
    finally:
        await bad_key.aclose()
