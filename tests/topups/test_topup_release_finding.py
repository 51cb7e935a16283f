"""A top-up whose bundle cannot be given back without taking another order's (eSIM Go revokes by name) is
left on the eSIM, and an operator finds it in the admin reconciliation view, once."""

from __future__ import annotations

from tests.b2b.conftest import B2B
from tests.topups.test_topup_supplier import _assignments, _esim, _release, _set_state, _topup


async def test_a_topup_bundle_left_on_the_esim_is_reported_to_an_operator(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=100_000)
    iccid = await _esim(b2b, vendor)
    topup = await _topup(b2b, vendor, iccid)
    sold, bought = _assignments(b2b, iccid)
    _set_state(b2b, iccid, bought, "active")  # eSIM Go would revoke the unused sold bundle, not ours

    assert await _release(b2b, topup["id"]) == 0
    assert await _release(b2b, topup["id"]) == 0  # a retry reports nothing twice

    runs = (await b2b.api.get("/api/v1/admin/reconciliation/runs", headers=b2b.admin)).json()["items"]
    found = []
    for run in runs:
        if run["requested_by"] == "system:topup-release":
            detail = await b2b.api.get(f"/api/v1/admin/reconciliation/runs/{run['id']}", headers=b2b.admin)
            found += [f for f in detail.json()["findings"] if f["order_id"] == topup["id"]]
    [finding] = found
    assert (finding["kind"], finding["action"]) == ("TOPUP_BUNDLE_NOT_REVOKED", "REPORTED")
    assert finding["detail"]["assignment_reference"] == bought["assignmentReference"]
    assert finding["detail"]["would_revoke"] == sold["assignmentReference"]
    assert [a["bundleState"] for a in _assignments(b2b, iccid)] == ["queued", "active"]
