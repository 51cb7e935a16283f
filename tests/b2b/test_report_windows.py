"""Report windows at the calendar's edge: a day past LAST_DAY (9998-12-31) cannot be turned into the instant
after it, so it is refused with 422 instead of overflowing into a 500, for every report that takes days."""

from __future__ import annotations

import pytest

from tests.b2b.conftest import B2B


@pytest.mark.parametrize("day", ["9999-12-31", "9999-01-01"])
async def test_a_day_past_the_last_representable_one_is_refused(b2b: B2B, day: str) -> None:
    vendor = await b2b.new_vendor()
    asks = [
        ("/api/v1/vendor/usage", vendor.headers),
        (f"/api/v1/admin/vendors/{vendor.id}/usage", b2b.admin),
    ]
    for path, headers in asks:
        for params in ({"to": day}, {"from": day, "to": day}):
            response = await b2b.api.get(path, params=params, headers=headers)
            assert response.status_code == 422, (path, params, response.text)
            assert response.json()["code"] == "VALIDATION_ERROR" and "9998-12-31" in response.json()["detail"]
    edge = await b2b.api.get("/api/v1/vendor/usage", params={"to": "9998-12-31"}, headers=vendor.headers)
    assert edge.status_code == 200, edge.text
