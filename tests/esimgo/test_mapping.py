"""Shapes the live service and the spec disagree on: both are accepted, and money is exact."""

from __future__ import annotations

import httpx
import pytest

from ttelgo.esimgo import mapping
from ttelgo.esimgo.client import EsimGoClient

BUNDLE = {
    "name": "esim_1GB_7D_FR_V2",
    "description": "eSIM, 1GB, 7 Days, France, V2",
    "groups": ["Standard Fixed"],
    "countries": [{"name": "France", "region": "Europe", "iso": "fr"}],
    "roamingEnabled": [],
    "dataAmount": 1000,
    "duration": 7,
    "speed": ["4G"],
    "autostart": True,
    "unlimited": False,
    "imageUrl": "",
    "price": 0.29,
    "billingType": "FixedCost",
    "allowances": [],
}


def test_bare_array_and_wrapped_catalogue_give_the_same_bundles() -> None:
    wrapped = mapping.catalogue_page(
        {"bundles": [BUNDLE], "pageCount": 3, "rows": 101, "pageSize": 50}, page=1, per_page=50
    )
    bare = mapping.catalogue_page([BUNDLE], page=1, per_page=50)
    assert wrapped.bundles == bare.bundles
    assert (wrapped.page_count, wrapped.rows) == (3, 101)
    assert bare.page_count == 1, "a short bare page is the last one"


def test_float_prices_become_exact_minor_units() -> None:
    # 0.29 is 0.28999999999999998 as a binary float; it must still be 29 cents.
    bundle = mapping.bundle(BUNDLE)
    assert bundle.price_minor == 29
    assert bundle.countries[0].iso == "FR"
    assert mapping.bundle({**BUNDLE, "price": 12.345}).price_minor == 1235


def test_unlimited_bundles_have_no_data_amount() -> None:
    assert mapping.bundle({**BUNDLE, "unlimited": True, "dataAmount": -1}).data_mb is None


@pytest.mark.parametrize(
    "payload",
    [
        {"organisations": [{"name": "Org", "currency": "USD", "balance": 1234.56}]},
        [{"name": "Org", "currency": "USD", "balance": 1234.56}],
        {"name": "Org", "currency": "USD", "balance": 1234.56},
    ],
)
def test_organisation_shapes(payload: object) -> None:
    org = mapping.organisation(payload)
    assert (org.name, org.balance_minor) == ("Org", 123456)


async def test_assignments_in_csv_are_read_too() -> None:
    csv_body = (
        "iccid,matchingId,smdpAddress,profileStatus\n8944000000000000001,ABC-123,rsp.example.test,Released\n"
    )

    def supplier(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=csv_body, headers={"content-type": "text/csv"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(supplier))
    client = EsimGoClient("http://supplier.test/v2.4", "k", http=http, max_requests_per_second=0)
    [esim] = await client.get_assignments("ref")
    assert esim.lpa == "LPA:1$rsp.example.test$ABC-123"
    await http.aclose()
