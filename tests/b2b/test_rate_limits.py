"""Rate limits: per vendor (with an admin override), per customer, per IP without credentials and,
stricter, on logins; shared by every API process; 429 problem+json with Retry-After and the IETF
RateLimit headers."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import select

from api.rate_limits import ip_bucket
from api.serve import server_config
from tests.b2b.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, B2B
from tests.conftest import make_settings
from tests.support.stack import api_client
from ttelgo.models import AuditLog
from ttelgo.ratelimit import Policy, build_rate_limiter
from ttelgo.ratelimit.limiter import Policies
from ttelgo.ratelimit.storage import PostgresStorage

RATELIMIT = re.compile(r'^"(?P<policy>\w+)";r=(?P<remaining>\d+);t=(?P<reset>\d+)$')
POLICY = re.compile(r'^"(?P<policy>\w+)";q=(?P<quota>\d+);w=(?P<window>\d+)$')


def _assert_refused(response) -> int:  # type: ignore[no-untyped-def]
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "RATE_LIMITED"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert RATELIMIT.match(response.headers["RateLimit"])["remaining"] == "0"
    return retry_after


async def test_400_rapid_calls_with_one_api_key_meet_429s_with_retry_after(b2b: B2B) -> None:
    vendor = await b2b.new_vendor()
    answers = [await b2b.api.get("/api/v1/vendor/wallet", headers=vendor.headers) for _ in range(400)]

    statuses = [answer.status_code for answer in answers]
    assert statuses[:300] == [200] * 300, "the default allows 300 a minute"
    assert statuses[300:] == [429] * 100
    for answer in answers[300:]:
        _assert_refused(answer)
    first = answers[0].headers
    assert POLICY.match(first["RateLimit-Policy"]).groupdict() == {
        "policy": "vendor",
        "quota": "300",
        "window": "60",
    }
    assert RATELIMIT.match(first["RateLimit"])["remaining"] == "299"
    assert RATELIMIT.match(answers[299].headers["RateLimit"])["remaining"] == "0"

    # Another vendor, and the admin, have budgets of their own.
    other = await b2b.new_vendor()
    assert (await b2b.api.get("/api/v1/vendor/wallet", headers=other.headers)).status_code == 200
    assert (await b2b.api.get("/api/v1/admin/vendors", headers=b2b.admin)).status_code == 200


async def test_an_admin_sets_a_vendors_limit_audited(b2b: B2B) -> None:
    vendor = await b2b.new_vendor()
    path = f"/api/v1/admin/vendors/{vendor.id}/rate-limit"
    got = await b2b.api.get(path, headers=b2b.admin)
    assert got.json() == {
        "vendor_id": vendor.id,
        "requests_per_minute": None,
        "policy": '"vendor";q=300;w=60',
    }

    for bad in (0, -1, 10**7, "many"):
        refused = await b2b.api.put(path, json={"requests_per_minute": bad}, headers=b2b.admin)
        assert refused.status_code == 422, refused.text
    missing = await b2b.api.put(
        f"/api/v1/admin/vendors/{uuid.uuid4()}/rate-limit", json={"requests_per_minute": 5}, headers=b2b.admin
    )
    assert missing.status_code == 404
    as_vendor = await b2b.api.put(path, json={"requests_per_minute": 1000}, headers=vendor.headers)
    assert as_vendor.status_code in (401, 403)

    set_ = await b2b.api.put(path, json={"requests_per_minute": 5, "reason": "abuse"}, headers=b2b.admin)
    assert set_.status_code == 200, set_.text
    assert set_.json()["requests_per_minute"] == 5
    answers = [await b2b.api.get("/api/v1/vendor/ledger", headers=vendor.headers) for _ in range(6)]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert answers[0].headers["RateLimit-Policy"] == '"vendor";q=5;w=60'
    _assert_refused(answers[5])

    back = await b2b.api.put(path, json={"requests_per_minute": None}, headers=b2b.admin)
    assert back.json()["requests_per_minute"] is None
    assert (await b2b.api.get("/api/v1/vendor/ledger", headers=vendor.headers)).status_code == 200

    async with b2b.sessions() as session:
        rows = (
            await session.scalars(
                select(AuditLog).where(AuditLog.action == "vendor.rate_limit").order_by(AuditLog.id)
            )
        ).all()
    assert [(r.target_id, r.before, r.after, r.reason) for r in rows] == [
        (vendor.id, {"requests_per_minute": None}, {"requests_per_minute": 5}, "abuse"),
        (vendor.id, {"requests_per_minute": 5}, {"requests_per_minute": None}, None),
    ]


@pytest.mark.parametrize("b2b", [{"settings": {"rate_limit_vendor": "10/minute"}}], indirect=True)
async def test_the_limit_is_shared_by_every_api_process(b2b: B2B) -> None:
    vendor = await b2b.new_vendor()
    async with api_client(b2b.settings) as second_process:
        apis = [b2b.api, second_process] * 6
        statuses = [
            (await api.get("/api/v1/vendor/wallet", headers=vendor.headers)).status_code for api in apis
        ]
    assert statuses == [200] * 10 + [429] * 2


LOW = {"rate_limit_auth": "3/minute", "rate_limit_anonymous": "5/minute", "rate_limit_user": "4/minute"}


@pytest.mark.parametrize("b2b", [{"settings": LOW}], indirect=True)
async def test_logins_are_limited_per_ip_more_strictly_than_other_anonymous_calls(b2b: B2B) -> None:
    wrong = {"email": ADMIN_EMAIL, "password": "not the password"}
    # The fixture's own admin login was the first of three.
    assert [(await b2b.api.post("/api/v1/auth/login", json=wrong)).status_code for _ in range(2)] == [401] * 2
    # Past the limit even the right password is refused, and so are the other logins and registration.
    right = await b2b.api.post("/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    _assert_refused(right)
    assert right.headers["RateLimit-Policy"] == '"auth";q=3;w=60'
    _assert_refused(await b2b.api.post("/api/v1/vendor/auth/login", json=wrong))
    _assert_refused(
        await b2b.api.post("/api/v1/auth/register", json={"email": "x@example.com", "password": "p" * 16})
    )

    # Anonymous calls elsewhere count per IP under their own policy.
    catalogue = [(await b2b.api.get("/api/v1/catalogue")).status_code for _ in range(6)]
    assert catalogue == [200] * 5 + [429]
    # Made-up credentials are anonymous too: they cannot buy a fresh budget.
    _assert_refused(await b2b.api.get("/api/v1/errors", headers={"Authorization": "Bearer made.up.token"}))
    _assert_refused(await b2b.api.get("/api/v1/errors", headers={"X-API-Key": "ttg_000000000000_nope"}))
    # Webhooks and health checks are never limited.
    assert (await b2b.api.get("/healthz")).status_code == 200
    webhook = await b2b.api.post("/api/v1/webhooks/stripe", content=b"{}")
    assert webhook.status_code != 429 and "RateLimit" not in webhook.headers

    # A logged-in staff member or customer counts on their own account, not on the IP's.
    answers = [(await b2b.api.get("/api/v1/admin/vendors", headers=b2b.admin)) for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 4 + [429]
    assert answers[0].headers["RateLimit-Policy"] == '"user";q=4;w=60'


@pytest.mark.parametrize("b2b", [{"settings": {"rate_limit_storage_uri": "memory://", **LOW}}], indirect=True)
async def test_a_single_process_may_count_in_memory(b2b: B2B) -> None:
    answers = [(await b2b.api.get("/api/v1/catalogue")).status_code for _ in range(6)]
    assert answers == [200] * 5 + [429]


async def test_an_unreachable_store_lets_requests_through(b2b: B2B) -> None:
    limiter = build_rate_limiter(b2b.settings)
    assert limiter is not None
    limiter.storage = PostgresStorage("postgresql://nobody@127.0.0.1:1/none")
    policy = Policy("anonymous", Policies.from_settings(b2b.settings).anonymous.item)
    try:
        assert await limiter.hit(policy, "127.0.0.1") is None
        assert await limiter.hit(policy, "127.0.0.1") is None  # paused: not even tried again
    finally:
        await limiter.close()


def test_an_ipv6_caller_counts_by_its_64_and_a_proxy_is_believed_only_when_trusted() -> None:
    assert ip_bucket("2001:db8:1:2:aaaa::1") == ip_bucket("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert ip_bucket("2001:db8:1:3::1") != ip_bucket("2001:db8:1:2::1")
    assert ip_bucket("::ffff:203.0.113.7") == ip_bucket("203.0.113.7") == "203.0.113.7"
    config = server_config(make_settings(trusted_proxies="10.0.0.0/8"))
    assert config.proxy_headers and config.forwarded_allow_ips == "10.0.0.0/8"
