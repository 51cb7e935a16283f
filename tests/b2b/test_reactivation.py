"""Issue 14, finished: admins list deactivated vendors, team members and customers, and reactivate them,
each audited. Logins work again; the keys, sessions and refresh tokens revoked at deactivation do not."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from tests.b2b.conftest import B2B
from tests.b2b.test_vendor_lifecycle import PASSWORD, _audit, _email, _member
from ttelgo.models import AuditLog


async def _vendor_login(b2b: B2B, member_id: str) -> int:
    login = await b2b.api.post(
        "/api/v1/vendor/auth/login", json={"email": await _email(b2b, member_id), "password": PASSWORD}
    )
    return login.status_code


async def test_a_reactivated_vendor_trades_again_with_new_keys_only(b2b: B2B) -> None:
    vendor = await b2b.new_vendor(balance=10_000)
    owner_id, owner, refresh = await _member(b2b, vendor, "owner")
    left_id, _, _ = await _member(b2b, vendor, "developer")
    base = f"/api/v1/admin/vendors/{vendor.id}"
    left = await b2b.api.post(f"{base}/users/{left_id}/deactivate", headers=b2b.admin)
    assert left.status_code == 204
    assert (await b2b.api.post(f"{base}/reactivate", headers=b2b.admin)).json()["code"] == "NOT_DEACTIVATED"
    assert (await b2b.api.post(f"{base}/deactivate", headers=b2b.admin)).status_code == 204

    live = (await b2b.api.get("/api/v1/admin/vendors", headers=b2b.admin)).json()["items"]
    assert vendor.id not in {v["id"] for v in live}
    gone = await b2b.api.get("/api/v1/admin/vendors", params={"deactivated": True}, headers=b2b.admin)
    [shown] = [v for v in gone.json()["items"] if v["id"] == vendor.id]
    assert shown["deleted_at"] is not None and all(v["deleted_at"] for v in gone.json()["items"])

    back = await b2b.api.post(f"{base}/reactivate", json={"reason": "contract renewed"}, headers=b2b.admin)
    assert back.status_code == 200, back.text
    assert back.json()["deleted_at"] is None and back.json()["status"] == "APPROVED"
    assert (await b2b.api.get(base, headers=b2b.admin)).status_code == 200
    audit = await _audit(b2b, vendor.id, "vendor.reactivate")
    assert audit.reason == "contract renewed" and audit.actor_type == "admin"
    assert audit.after == {"deleted_at": None, "members_reactivated": 1, "api_keys_reactivated": 0}

    # What deactivation revoked stays revoked: the old key, the old access and refresh tokens.
    by_key = await b2b.api.get("/api/v1/vendor/wallet", headers=vendor.headers)
    assert by_key.status_code == 401 and by_key.json()["code"] == "API_KEY_INVALID"
    assert (await b2b.api.get("/api/v1/vendor/wallet", headers=owner)).status_code == 401
    assert (await b2b.api.post("/api/v1/auth/refresh", json={"refresh_token": refresh})).status_code == 401
    # Logins work again for the team deactivated with the vendor; not for the one who had left before.
    assert await _vendor_login(b2b, owner_id) == 200
    assert await _vendor_login(b2b, left_id) == 401
    assert (await _audit(b2b, owner_id, "vendor_user.reactivate")).actor_type == "admin"
    key = await b2b.api.post(f"{base}/api-keys", json={"name": "after renewal"}, headers=b2b.admin)
    assert key.status_code == 201, key.text
    wallet = await b2b.api.get("/api/v1/vendor/wallet", headers={"X-API-Key": key.json()["key"]})
    assert wallet.status_code == 200 and wallet.json()["balance_minor"] == 10_000

    members = await b2b.api.get(f"{base}/users", params={"deactivated": True}, headers=b2b.admin)
    assert [m["id"] for m in members.json()["items"]] == [left_id]
    rejoined = await b2b.api.post(f"{base}/users/{left_id}/reactivate", headers=b2b.admin)
    assert rejoined.status_code == 200 and rejoined.json()["deleted_at"] is None
    assert await _vendor_login(b2b, left_id) == 200
    team = (await b2b.api.get(f"{base}/users", headers=b2b.admin)).json()
    assert {m["id"] for m in team["items"]} == {owner_id, left_id} and team["total"] == 2
    again = await b2b.api.post(f"{base}/users/{left_id}/reactivate", headers=b2b.admin)
    assert again.status_code == 409 and again.json()["code"] == "NOT_DEACTIVATED"
    other = await b2b.new_vendor()
    foreign = await b2b.api.post(
        f"/api/v1/admin/vendors/{other.id}/users/{left_id}/reactivate", headers=b2b.admin
    )
    assert foreign.status_code == 404
    missing = await b2b.api.post(f"/api/v1/admin/vendors/{uuid.uuid4()}/reactivate", headers=b2b.admin)
    assert missing.status_code == 404 and missing.json()["code"] == "VENDOR_NOT_FOUND"


async def _register(b2b: B2B, email: str) -> tuple[str, dict[str, str]]:
    registered = await b2b.api.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert registered.status_code == 201, registered.text
    headers = {"Authorization": f"Bearer {registered.json()['access_token']}"}
    return (await b2b.api.get("/api/v1/me", headers=headers)).json()["id"], headers


async def _reactivations(b2b: B2B, target_id: str) -> int:
    async with b2b.sessions() as session:
        found = await session.scalar(
            select(func.count()).where(AuditLog.target_id == target_id, AuditLog.action == "user.reactivate")
        )
    return int(found or 0)


async def test_a_reactivated_customer_logs_in_again_but_old_sessions_stay_ended(b2b: B2B) -> None:
    email = f"Back-{uuid.uuid4().hex[:8]}@example.com"
    user_id, old = await _register(b2b, email)
    url = f"/api/v1/admin/customers/{user_id}"
    live = await b2b.api.post(f"{url}/reactivate", headers=b2b.admin)
    assert live.status_code == 409 and live.json()["code"] == "NOT_DEACTIVATED"
    assert (await b2b.api.post(f"{url}/deactivate", headers=b2b.admin)).status_code == 204

    listed = await b2b.api.get(
        "/api/v1/admin/customers", params={"deactivated": True, "email": email.lower()}, headers=b2b.admin
    )
    [shown] = listed.json()["items"]
    assert shown["id"] == user_id and shown["deleted_at"] is not None
    live_list = await b2b.api.get("/api/v1/admin/customers", params={"email": email}, headers=b2b.admin)
    assert live_list.json()["total"] == 0

    back = await b2b.api.post(f"{url}/reactivate", json={"reason": "appeal upheld"}, headers=b2b.admin)
    assert back.status_code == 200 and back.json()["deleted_at"] is None
    assert (await _audit(b2b, user_id, "user.reactivate")).reason == "appeal upheld"
    assert (await b2b.api.get("/api/v1/me", headers=old)).status_code == 401
    login = await b2b.api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200
    fresh = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert (await b2b.api.get("/api/v1/me", headers=fresh)).json()["id"] == user_id

    # Deactivated again, and meanwhile someone registered the e-mail: reactivation is refused, changes nothing.
    assert (await b2b.api.post(f"{url}/deactivate", headers=b2b.admin)).status_code == 204
    await _register(b2b, email)
    clash = await b2b.api.post(f"{url}/reactivate", headers=b2b.admin)
    assert clash.status_code == 409 and clash.json()["code"] == "EMAIL_ALREADY_REGISTERED"
    assert await _reactivations(b2b, user_id) == 1
    still = await b2b.api.get("/api/v1/admin/customers", params={"deactivated": True}, headers=b2b.admin)
    assert user_id in {c["id"] for c in still.json()["items"]}

    admin_id = (await b2b.api.get("/api/v1/me", headers=b2b.admin)).json()["id"]
    staff = await b2b.api.post(f"/api/v1/admin/customers/{admin_id}/reactivate", headers=b2b.admin)
    assert staff.status_code == 404 and staff.json()["code"] == "USER_NOT_FOUND"
