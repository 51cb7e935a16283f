"""HTTP client for eSIM Go v2.4: one pooled httpx.AsyncClient per process, supplier payloads mapped once.

It never retries by itself: it classifies each failure (SupplierRetryableError / SupplierPermanentError)
and lets Temporal decide when to try again.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import httpx

from ttelgo.esimgo import mapping
from ttelgo.esimgo.errors import PermanentReason, SupplierPermanentError, SupplierRetryableError
from ttelgo.esimgo.pacing import RequestPacer
from ttelgo.esimgo.types import (
    Bundle,
    BundleUsage,
    CataloguePage,
    EsimProfile,
    Organisation,
    PurchaseLine,
    SupplierOrder,
)

DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
NOT_PROCESSED = frozenset({429, 503})  # statuses that say the supplier did not act on the request

# Live error messages that mean a retry cannot help, first match wins.
_PERMANENT_MESSAGES: tuple[tuple[re.Pattern[str], PermanentReason], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), reason)
    for pattern, reason in (
        (r"bundles left|out of stock", PermanentReason.NO_STOCK),
        (r"insufficient (organisation )?balance", PermanentReason.SUPPLIER_BALANCE_EXHAUSTED),
        (r"bundle \S+ not found|unknown bundle", PermanentReason.UNKNOWN_BUNDLE),
        (r"not found|not accessible|invalid iccid|does not exist", PermanentReason.NOT_FOUND),
    )
)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    return str(body.get("message") or body) if isinstance(body, dict) else str(body)[:300]


def classify(response: httpx.Response) -> None:
    """Raise the domain error a failed response stands for; return quietly on success."""
    if response.is_success:
        return
    status, message = response.status_code, _message(response)
    if status == 429 or status >= 500:
        raise SupplierRetryableError(
            f"eSIM Go {status}: {message}",
            status=status,
            retry_after=_retry_after(response),
            # 429 and 503 refuse the request outright; any other 5xx may come after the work was done.
            in_doubt=status not in NOT_PROCESSED,
        )
    if status == 401 or (status == 403 and "key" in message.lower()):
        raise SupplierPermanentError(
            PermanentReason.BAD_API_KEY, f"eSIM Go rejected the API key: {message}", status=status
        )
    reason = next((r for pattern, r in _PERMANENT_MESSAGES if pattern.search(message)), None)
    if reason is None:
        reason = PermanentReason.NOT_FOUND if status == 404 else PermanentReason.REJECTED
    raise SupplierPermanentError(reason, f"eSIM Go {status}: {message}", status=status)


class EsimGoClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_requests_per_second: float = 8.0,
    ) -> None:
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=timeout, limits=httpx.Limits(max_connections=20, max_keepalive_connections=10)
        )
        self._base = base_url.rstrip("/")
        self._pacer = RequestPacer(max_requests_per_second)
        self._headers = {"X-API-Key": api_key, "Accept": "application/json"}

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        accept: str = "application/json",
    ) -> httpx.Response:
        await self._pacer.wait()
        try:
            response = await self._http.request(
                method,
                f"{self._base}{path}",
                params=params,
                json=json,
                headers={**self._headers, "Accept": accept},
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:  # nothing was sent
            raise SupplierRetryableError(f"eSIM Go unreachable on {method} {path}: {exc!r}") from exc
        except httpx.TimeoutException as exc:
            raise SupplierRetryableError(
                f"eSIM Go timed out on {method} {path}: {type(exc).__name__}", in_doubt=True
            ) from exc
        except httpx.TransportError as exc:
            raise SupplierRetryableError(
                f"eSIM Go connection lost on {method} {path}: {exc!r}", in_doubt=True
            ) from exc
        classify(response)
        return response

    # -- catalogue ---------------------------------------------------------------------------------------
    async def list_catalogue(
        self,
        *,
        page: int = 1,
        per_page: int = 200,
        countries: list[str] | None = None,
        region: str | None = None,
    ) -> CataloguePage:
        params: dict[str, Any] = {"page": page, "perPage": per_page}
        if countries:
            params["countries"] = ",".join(countries)
        if region:
            params["region"] = region
        response = await self._request("GET", "/catalogue", params=params)
        return mapping.catalogue_page(response.json(), page=page, per_page=per_page)

    async def iter_catalogue(self, per_page: int = 500) -> AsyncIterator[Bundle]:
        page = 1
        while True:
            result = await self.list_catalogue(page=page, per_page=per_page)
            for bundle in result.bundles:
                yield bundle
            if page >= result.page_count or not result.bundles:
                return
            page += 1

    async def get_bundle(self, name: str) -> Bundle:
        response = await self._request("GET", f"/catalogue/bundle/{name}")
        return mapping.bundle(response.json())

    # -- orders ------------------------------------------------------------------------------------------
    async def create_order(
        self, bundle_name: str, quantity: int, *, validate_only: bool = False, iccids: list[str] | None = None
    ) -> SupplierOrder:
        line = PurchaseLine(bundle_name=bundle_name, quantity=quantity, iccids=tuple(iccids or ()))
        return await self.create_order_lines([line], validate_only=validate_only)

    async def create_order_lines(
        self, lines: Sequence[PurchaseLine], *, validate_only: bool = False
    ) -> SupplierOrder:
        """One supplier order of several lines: eSIM Go places all of them or none."""
        body = {
            "type": "validate" if validate_only else "transaction",
            "assign": True,
            "order": [mapping.order_item(line) for line in lines],
        }
        response = await self._request("POST", "/orders", json=body)
        return mapping.supplier_order(response.json())

    async def get_order(self, reference: str) -> SupplierOrder:
        response = await self._request("GET", f"/orders/{reference}")
        return mapping.supplier_order(response.json())

    async def recent_orders(
        self, since: datetime, *, per_page: int = 100, max_pages: int = 20
    ) -> list[SupplierOrder]:
        """Orders created at or after `since` (newest pages first where the supplier sorts that way), with
        the eSIMs each assigned: without them a top-up cannot be told from an order of new eSIMs."""
        found: list[SupplierOrder] = []
        for page in range(1, max_pages + 1):
            params = {"page": page, "limit": per_page, "includeIccids": "true"}
            response = await self._request("GET", "/orders", params=params)
            payload = response.json()
            orders = [mapping.supplier_order(o) for o in mapping.as_list(payload, "orders")]
            found += [o for o in orders if o.created_at and o.created_at >= since]
            page_count = int(payload.get("pageCount", 1)) if isinstance(payload, dict) else 1
            oldest = orders[-1].created_at if orders else None
            if page >= page_count or not orders or (oldest is not None and oldest < since):
                break
        return found

    async def get_assignments(self, reference: str) -> list[EsimProfile]:
        response = await self._request("GET", "/esims/assignments", params={"reference": reference})
        if "csv" in response.headers.get("content-type", ""):
            return [mapping.esim_profile(row) for row in csv.DictReader(io.StringIO(response.text))]
        return [mapping.esim_profile(row) for row in mapping.as_list(response.json(), "esims")]

    # -- eSIMs -------------------------------------------------------------------------------------------
    async def get_esim(self, iccid: str) -> EsimProfile:
        response = await self._request("GET", f"/esims/{iccid}")
        return mapping.esim_profile(response.json())

    async def get_esim_bundles(self, iccid: str) -> list[BundleUsage]:
        response = await self._request("GET", f"/esims/{iccid}/bundles")
        return mapping.bundle_usages(response.json())

    async def revoke_bundle(self, iccid: str, bundle_name: str, *, refund_to_balance: bool = True) -> None:
        params = {"type": "transaction", "refundToBalance": str(refund_to_balance).lower()}
        await self._request("DELETE", f"/esims/{iccid}/bundles/{bundle_name}", params=params)

    async def get_organisation(self) -> Organisation:
        response = await self._request("GET", "/organisation")
        return mapping.organisation(response.json())
