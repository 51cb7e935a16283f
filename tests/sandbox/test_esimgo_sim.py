"""Contract-level tests of the eSIM Go simulator, talking HTTP to a real uvicorn server."""

import base64
import csv
import hashlib
import hmac
import io
import json
import math
import os
import re
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from ttelgo.sandbox.esimgo_sim import FaultRule, FaultSettings, SimConfig
from ttelgo.sandbox.esimgo_sim.catalogue import Catalogue
from ttelgo.sandbox.esimgo_sim.countries import REGIONS
from ttelgo.sandbox.esimgo_sim.identifiers import is_luhn_valid, luhn_check_digit

from .conftest import API_KEY, CallbackReceiver, Sim, running_sim

GB_1_7D = "esim_1GB_7D_GB_V2"
GB = 1_000_000_000  # usage quantities are in decimal bytes


def money(value: float) -> Decimal:
    return Decimal(str(value))


def put_faults(sim: Sim, settings: dict) -> None:
    response = sim.admin.put("/faults", json=settings)
    assert response.status_code == 200, response.text


def new_esim(sim: Sim, item: str = GB_1_7D) -> str:
    response = sim.order(item)
    assert response.status_code == 200, response.text
    return response.json()["order"][0]["iccids"][0]


# ----- auth and shapes -----
def test_api_key_required(sim: Sim) -> None:
    missing = httpx.get(f"{sim.base}/v2.4/organisation")
    wrong = httpx.get(f"{sim.base}/v2.4/organisation", headers={"X-API-Key": "nope"})
    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["message"] and wrong.json()["message"]
    assert sim.api.get("/organisation").status_code == 200
    assert httpx.get(f"{sim.base}/_sim/stats").status_code == 200  # admin needs no key


def test_organisation_is_wrapped_with_usd_balance(sim: Sim) -> None:
    org = sim.api.get("/organisation").json()["organisations"][0]
    assert org["currency"] == "USD"
    assert money(org["balance"]) == Decimal("100000")
    assert org["name"] and API_KEY not in json.dumps(org)


def test_unknown_route_and_bad_json_answer_message_json(sim: Sim) -> None:
    assert sim.api.get("/nope").json() == {"message": "Not Found"}
    bad = sim.api.post("/orders", content=b"{oops", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and "JSON" in bad.json()["message"]


# ----- catalogue -----
def all_bundles(sim: Sim, **params: str) -> list[dict]:
    body = sim.api.get("/catalogue", params={"perPage": "10000", **params}).json()
    assert body["rows"] == len(body["bundles"])
    return body["bundles"]


def test_catalogue_coverage_and_naming(sim: Sim) -> None:
    bundles = all_bundles(sim)
    local = [b for b in bundles if len(b["countries"]) == 1]
    isos = {b["countries"][0]["iso"] for b in local}
    assert len(isos) >= 100 and all(re.fullmatch(r"[A-Z]{2}", i) for i in isos)
    assert {c["region"] for b in local for c in b["countries"]} == set(REGIONS)
    names = {b["name"]: b for b in bundles}
    for gb in (1, 3, 5, 10, 20):
        for days in (7, 15, 30):
            b = names[f"esim_{gb}GB_{days}D_GB_V2"]
            assert (b["dataAmount"], b["duration"], b["unlimited"]) == (gb * 1000, days, False)
            assert b["countries"] == [{"name": "United Kingdom", "region": "Europe", "iso": "GB"}]
    assert len(names["esim_5GB_30D_EU_V3"]["countries"]) > 30  # regional
    assert len(names["esim_1GB_7D_RGL_V2"]["countries"]) >= 100  # global
    unlimited = names["esim_ULE_7D_FR_V2"]
    assert unlimited["unlimited"] is True and unlimited["countries"][0]["iso"] == "FR"
    expected_keys = {
        "name",
        "description",
        "groups",
        "countries",
        "roamingEnabled",
        "dataAmount",
        "duration",
        "speed",
        "autostart",
        "unlimited",
        "imageUrl",
        "price",
        "billingType",
        "allowances",
    }
    assert set(names[GB_1_7D]) == expected_keys


def test_catalogue_prices_are_sensible(sim: Sim) -> None:
    names = {b["name"]: b for b in all_bundles(sim)}
    for b in names.values():
        assert b["price"] > 0 and round(b["price"], 2) == b["price"]
    for iso in ("GB", "JP", "ZA"):
        for days in (7, 15, 30):
            prices = [names[f"esim_{gb}GB_{days}D_{iso}_V2"]["price"] for gb in (1, 3, 5, 10, 20)]
            assert prices == sorted(prices) and len(set(prices)) == 5
        durations = [names[f"esim_5GB_{d}D_{iso}_V2"]["price"] for d in (7, 15, 30)]
        assert durations == sorted(durations) and len(set(durations)) == 3
    assert names["esim_10GB_30D_VU_V2"]["price"] > 2 * names["esim_10GB_30D_GB_V2"]["price"]


def test_catalogue_is_deterministic_per_seed() -> None:
    a, b, c = Catalogue.generate(42), Catalogue.generate(42), Catalogue.generate(7)
    assert [x.to_api() for x in a.bundles] == [x.to_api() for x in b.bundles]
    assert [x.price for x in a.bundles] != [x.price for x in c.bundles]


def test_catalogue_paging(sim: Sim) -> None:
    first = sim.api.get("/catalogue", params={"page": 1, "perPage": 10}).json()
    second = sim.api.get("/catalogue", params={"page": 2, "perPage": 10}).json()
    assert first["pageSize"] == 10 and len(first["bundles"]) == 10
    assert first["pageCount"] == math.ceil(first["rows"] / 10)
    assert not {b["name"] for b in first["bundles"]} & {b["name"] for b in second["bundles"]}
    beyond = sim.api.get("/catalogue", params={"page": first["pageCount"] + 1, "perPage": 10}).json()
    assert beyond["bundles"] == [] and beyond["rows"] == first["rows"]
    assert sim.api.get("/catalogue", params={"perPage": 0}).status_code == 400


def test_catalogue_filters(sim: Sim) -> None:
    by_country = all_bundles(sim, countries="GB,FR")
    assert by_country and all({c["iso"] for c in b["countries"]} & {"GB", "FR"} for b in by_country)
    assert {b["countries"][0]["iso"] for b in by_country if len(b["countries"]) == 1} == {"GB", "FR"}
    asia = all_bundles(sim, region="Asia")
    assert asia and all(any(c["region"] == "Asia" for c in b["countries"]) for b in asia)
    ule = all_bundles(sim, group="Standard Unlimited Essential")
    assert ule and all(b["unlimited"] and b["groups"] == ["Standard Unlimited Essential"] for b in ule)
    japan = all_bundles(sim, description="Japan")
    assert japan and all("Japan" in b["description"] for b in japan)
    assert all_bundles(sim, description="*30 Days, Japan*") == [
        b for b in japan if "30 Days" in b["description"]
    ]
    ordered = all_bundles(sim, countries="DE", orderBy="price", direction="desc")
    assert [b["price"] for b in ordered] == sorted((b["price"] for b in ordered), reverse=True)
    assert sim.api.get("/catalogue", params={"orderBy": "colour"}).status_code == 400


def test_bundle_lookup_is_case_sensitive(sim: Sim) -> None:
    bundle = sim.api.get(f"/catalogue/bundle/{GB_1_7D}")
    assert bundle.status_code == 200 and bundle.json()["name"] == GB_1_7D
    missing = sim.api.get(f"/catalogue/bundle/{GB_1_7D.upper()}")
    assert missing.status_code == 400 and GB_1_7D.upper() in missing.json()["message"]


# ----- orders -----
def test_validate_prices_without_charging(sim: Sim) -> None:
    price = sim.api.get(f"/catalogue/bundle/{GB_1_7D}").json()["price"]
    body = sim.order(GB_1_7D, 3, kind="validate").json()
    assert body["valid"] is True and money(body["total"]) == money(price) * 3
    assert body["order"][0]["AllowReassign"] is False and "esims" not in body["order"][0]
    assert sim.balance() == Decimal("100000")
    assert sim.stats()["orders"]["transactions"] == 0
    assert sim.api.get("/orders").json()["rows"] == 0


def test_transaction_charges_total_and_issues_valid_iccids(sim: Sim) -> None:
    first = sim.order(GB_1_7D, 2).json()
    second = sim.order("esim_5GB_30D_EU_V3", 1).json()
    assert first["status"] == "completed" and first["statusMessage"] == "Order completed: 2 eSIMs assigned"
    assert first["currency"] == "USD" and first["assigned"] is True
    line = first["order"][0]
    assert line["subTotal"] == first["total"] and money(line["pricePerUnit"]) * 2 == money(first["total"])
    assert {"AllowReassign", "esims", "iccids"} <= set(line)
    assert sim.balance() == Decimal("100000") - money(first["total"]) - money(second["total"])
    esims = line["esims"] + second["order"][0]["esims"]
    iccids = [e["iccid"] for e in esims]
    assert len(set(iccids)) == 3
    for esim in esims:
        assert re.fullmatch(r"8944\d{15}", esim["iccid"]) and is_luhn_valid(esim["iccid"])
        assert re.fullmatch(r"[A-Z0-9]{4}(-[A-Z0-9]{4}){3}", esim["matchingId"])
        assert esim["smdpAddress"].endswith(".test")
    assert line["iccids"] == iccids[:2]
    fetched = sim.api.get(f"/orders/{first['orderReference']}").json()
    assert fetched == first
    listed = sim.api.get("/orders", params={"limit": 1}).json()
    assert listed["rows"] == 2 and listed["pageCount"] == 2 and len(listed["orders"]) == 1


def test_luhn_helper_matches_known_number() -> None:
    assert luhn_check_digit("7992739871") == "3" and is_luhn_valid("79927398713")
    assert not is_luhn_valid("79927398710")


def test_insufficient_balance_charges_nothing(sim: Sim) -> None:
    sim.admin.put("/organisation/balance", json={"balance": "1.00"})
    response = sim.order(GB_1_7D, 1)
    assert response.status_code == 400 and "balance" in response.json()["message"].lower()
    assert sim.balance() == Decimal("1.00")
    assert sim.api.get("/orders").json()["rows"] == 0 and sim.stats()["orders"]["transactions"] == 0


def test_order_validation_errors(sim: Sim) -> None:
    unknown = sim.order("esim_1GB_7D_XX_V9")
    assert unknown.status_code == 400 and "esim_1GB_7D_XX_V9" in unknown.json()["message"]
    assert sim.order(GB_1_7D, 0).status_code == 400
    bad_type = sim.api.post(
        "/orders", json={"type": "buy", "order": [{"type": "bundle", "quantity": 1, "item": GB_1_7D}]}
    )
    assert bad_type.status_code == 400 and bad_type.json()["message"]
    assert sim.balance() == Decimal("100000")


def test_async_order_completes_later(sim: Sim) -> None:
    placed = sim.order(GB_1_7D, 6).json()
    assert placed["status"] == "processing" and "esims" not in placed["order"][0]
    assert sim.balance() == Decimal("100000") - money(placed["total"])  # charged at once, like the live API
    ref = placed["orderReference"]
    early = sim.api.get(
        "/esims/assignments", params={"reference": ref}, headers={"Accept": "application/json"}
    )
    assert early.json() == []
    deadline = time.monotonic() + 5
    while (order := sim.api.get(f"/orders/{ref}").json())["status"] != "completed":
        assert time.monotonic() < deadline, "async order never completed"
        time.sleep(0.05)
    assert (
        len(order["order"][0]["esims"]) == 6 and order["statusMessage"] == "Order completed: 6 eSIMs assigned"
    )
    late = sim.api.get(
        "/esims/assignments", params={"reference": ref}, headers={"Accept": "application/json"}
    )
    assert sorted(e["iccid"] for e in late.json()) == sorted(order["order"][0]["iccids"])


# ----- install details -----
def test_assignments_json_and_csv(sim: Sim) -> None:
    order = sim.order(GB_1_7D, 2).json()
    ref = order["orderReference"]
    rows = sim.api.get(
        "/esims/assignments", params={"reference": ref}, headers={"Accept": "application/json"}
    ).json()
    assert [r["iccid"] for r in rows] == order["order"][0]["iccids"]
    assert set(rows[0]) == {
        "iccid",
        "matchingId",
        "smdpAddress",
        "profileStatus",
        "pin",
        "puk",
        "firstInstalledDateTime",
    }
    assert rows[0]["profileStatus"] == "Released" and re.fullmatch(r"\d{4}", rows[0]["pin"])
    for accept in (None, "text/csv"):
        response = sim.api.get(
            "/esims/assignments", params={"reference": ref}, headers={"Accept": accept} if accept else {}
        )
        assert response.headers["content-type"].startswith("text/csv")
        parsed = list(csv.DictReader(io.StringIO(response.text)))
        assert [r["iccid"] for r in parsed] == [r["iccid"] for r in rows]
        assert parsed[0]["matchingId"] == rows[0]["matchingId"]
    assert sim.api.get("/esims/assignments").status_code == 400


def test_esim_details_and_bundles(sim: Sim) -> None:
    iccid = new_esim(sim)
    details = sim.api.get(f"/esims/{iccid}").json()
    assert details["iccid"] == iccid and details["profileStatus"] == "Released"
    assert details["firstInstalledDateTime"] is None and re.fullmatch(r"\d{8}", details["puk"])
    bundles = sim.api.get(f"/esims/{iccid}/bundles").json()["bundles"]
    assert [b["name"] for b in bundles] == [GB_1_7D]
    (assignment,) = bundles[0]["assignments"]
    assert assignment["callTypeGroup"] == "data" and assignment["bundleState"] == "queued"
    assert assignment["initialQuantity"] == assignment["remainingQuantity"] == GB
    assert assignment["unlimited"] is False and assignment["assignmentReference"]
    stranger = "89440000000000000" + "0" + luhn_check_digit("894400000000000000")
    assert sim.api.get(f"/esims/{stranger}").status_code == 403
    assert sim.api.get("/esims/not-an-iccid").status_code == 400


def test_top_up_existing_esim(sim: Sim) -> None:
    iccid = new_esim(sim)
    before = sim.balance()
    top_up = sim.order("esim_3GB_15D_GB_V2", 1, iccids=[iccid])
    assert top_up.status_code == 200, top_up.text
    body = top_up.json()
    assert body["order"][0]["iccids"] == [iccid] and body["order"][0]["esims"][0]["iccid"] == iccid
    assert sim.balance() == before - money(body["total"])
    assert sim.api.get("/esims").json()["rows"] == 1  # no new eSIM
    names = [b["name"] for b in sim.api.get(f"/esims/{iccid}/bundles").json()["bundles"]]
    assert names == [GB_1_7D, "esim_3GB_15D_GB_V2"]
    assert sim.order(GB_1_7D, 2, iccids=[iccid]).status_code == 400  # count != quantity
    assert sim.order(GB_1_7D, 1, iccids=[iccid], assign=False).status_code == 400
    stranger = "894400000000000000" + luhn_check_digit("894400000000000000")
    assert sim.order(GB_1_7D, 1, iccids=[stranger]).status_code == 403
    assert sim.balance() == before - money(body["total"])


# ----- revoke -----
def test_revoke_unused_refunds_and_used_does_not(sim: Sim) -> None:
    price = money(sim.api.get(f"/catalogue/bundle/{GB_1_7D}").json()["price"])
    unused, used = new_esim(sim), new_esim(sim)
    balance = sim.balance()
    check = sim.api.delete(
        f"/esims/{unused}/bundles/{GB_1_7D}", params={"type": "validate", "refundToBalance": "true"}
    )
    assert check.status_code == 200 and "refund" in check.json()["status"]
    assert sim.balance() == balance  # validate changes nothing
    done = sim.api.delete(
        f"/esims/{unused}/bundles/{GB_1_7D}", params={"type": "transaction", "refundToBalance": "true"}
    )
    assert done.status_code == 200 and "refunded to balance" in done.json()["status"]
    assert sim.balance() == balance + price
    state = sim.api.get(f"/esims/{unused}/bundles").json()["bundles"][0]["assignments"][0]["bundleState"]
    assert state == "revoked"
    assert sim.admin.post(f"/esims/{used}/usage", json={"bytes": 1000}).status_code == 200
    revoked = sim.api.delete(
        f"/esims/{used}/bundles/{GB_1_7D}", params={"type": "transaction", "refundToBalance": "true"}
    )
    assert revoked.status_code == 200 and "refund" not in revoked.json()["status"]
    assert sim.balance() == balance + price
    assert (
        sim.api.get(f"/esims/{used}/bundles").json()["bundles"][0]["assignments"][0]["bundleState"]
        == "revoked"
    )
    again = sim.api.delete(f"/esims/{unused}/bundles/{GB_1_7D}", params={"refundToBalance": "true"})
    assert again.status_code == 400 and sim.balance() == balance + price


# ----- rate limit -----
def test_rate_limit_fixed_window() -> None:
    with running_sim(SimConfig(api_key=API_KEY, rate_limit_per_second=3)) as sim:
        time.sleep(1.02 - time.time() % 1)  # start just after a window boundary so the burst fits in one
        responses = [sim.api.get("/organisation") for _ in range(5)]
        assert [r.status_code for r in responses] == [200, 200, 200, 429, 429]
        assert [r.headers["X-Ratelimit-Remaining"] for r in responses] == ["2", "1", "0", "0", "0"]
        assert all(r.headers["X-Ratelimit-Limit"] == "3" for r in responses)
        assert int(responses[0].headers["X-Ratelimit-Reset"]) == math.floor(time.time()) + 1
        assert responses[3].json() == {"message": "Rate limit exceeded"}
        assert responses[3].headers["Retry-After"] == "1"
        assert all(sim.admin.get("/stats").status_code == 200 for _ in range(6))  # admin is not limited
        time.sleep(1.02 - time.time() % 1)
        assert sim.api.get("/organisation").status_code == 200
        assert sim.admin.get("/stats").json()["rate_limited"] == 2


# ----- faults -----
def test_fail_next_is_deterministic_and_charges_nothing(sim: Sim) -> None:
    put_faults(sim, {"endpoints": {"POST /orders": {"fail_next": 2, "error_status": 500}}})
    statuses = [sim.order(GB_1_7D).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    assert sim.stats()["orders"]["transactions"] == 1
    price = money(sim.api.get(f"/catalogue/bundle/{GB_1_7D}").json()["price"])
    assert sim.balance() == Decimal("100000") - price
    assert sim.admin.get("/faults").json()["endpoints"]["POST /orders"]["fail_next"] == 0


def test_error_rate_one_hits_only_its_endpoint(sim: Sim) -> None:
    put_faults(sim, {"endpoints": {"GET /catalogue": {"error_rate": 1.0, "error_status": 502}}})
    assert {sim.api.get("/catalogue").status_code for _ in range(3)} == {502}
    assert sim.api.get(f"/catalogue/bundle/{GB_1_7D}").status_code == 200
    assert sim.api.get("/catalogue").json()["message"]
    sim.admin.delete("/faults")
    assert sim.api.get("/catalogue").status_code == 200


def test_processing_fault_is_503_with_retry_after(sim: Sim) -> None:
    put_faults(sim, {"default": {"processing_rate": 1.0, "retry_after_s": 2}})
    response = sim.api.get("/organisation")
    assert response.status_code == 503 and response.json() == {"message": "processing"}
    assert response.headers["Retry-After"] == "2"


def test_latency_fault_delays_answer(sim: Sim) -> None:
    put_faults(sim, {"endpoints": {"GET /organisation": {"latency_ms": 300}}})
    started = time.perf_counter()
    assert sim.api.get("/organisation").status_code == 200
    assert time.perf_counter() - started >= 0.3
    started = time.perf_counter()
    sim.api.get(f"/catalogue/bundle/{GB_1_7D}")
    assert time.perf_counter() - started < 0.3


def test_timeout_fault_hangs_and_charges_nothing(sim: Sim) -> None:
    put_faults(sim, {"endpoints": {"POST /orders": {"timeout_rate": 1.0, "timeout_s": 0.8}}})
    with pytest.raises(httpx.ReadTimeout):
        sim.api.post(
            "/orders",
            timeout=0.2,
            json={
                "type": "transaction",
                "assign": True,
                "order": [{"type": "bundle", "quantity": 1, "item": GB_1_7D}],
            },
        )
    time.sleep(0.8)  # let the hung request finish on the server
    assert sim.balance() == Decimal("100000") and sim.stats()["orders"]["transactions"] == 0


def test_timeout_that_commits_places_the_order(sim: Sim) -> None:
    put_faults(
        sim, {"endpoints": {"POST /orders": {"timeout_rate": 1.0, "timeout_s": 0.4, "timeout_commits": True}}}
    )
    with pytest.raises(httpx.ReadTimeout):
        sim.api.post(
            "/orders",
            timeout=0.1,
            json={
                "type": "transaction",
                "assign": True,
                "order": [{"type": "bundle", "quantity": 1, "item": GB_1_7D}],
            },
        )
    deadline = time.monotonic() + 3
    while sim.api.get("/orders").json()["rows"] == 0:
        assert time.monotonic() < deadline, "committed order never appeared"
        time.sleep(0.05)
    assert sim.stats()["orders"]["transactions"] == 1


def test_no_bundles_left_charges_nothing(sim: Sim) -> None:
    put_faults(sim, {"endpoints": {"POST /orders": {"no_bundles_left": True}}})
    response = sim.order(GB_1_7D)
    assert response.status_code == 403 and "Bundles left" in response.json()["message"]
    assert sim.balance() == Decimal("100000") and sim.stats()["orders"]["transactions"] == 0
    assert sim.api.get("/organisation").status_code == 200  # other endpoints unaffected


def test_fault_settings_api(sim: Sim) -> None:
    typo = sim.admin.put("/faults", json={"endpoints": {"GET /esim/{iccid}": {"fail_next": 1}}})
    assert typo.status_code == 422 and "GET /esims/{iccid}" in typo.json()["message"]
    assert sim.admin.put("/faults", json={"default": {"error_rate": 2}}).status_code == 422
    put_faults(sim, {"default": {"fail_next": 1}})
    assert sim.api.get("/organisation").status_code == 500
    assert sim.api.get("/organisation").status_code == 200
    assert "GET /esims/{iccid}" in sim.admin.get("/faults").json()["known_endpoints"]


def test_faults_from_env() -> None:
    faults = {"endpoints": {"GET /catalogue": {"fail_next": 1, "error_status": 429}}}
    env = {
        "ESIMGO_SIM_FAULTS": json.dumps(faults),
        "ESIMGO_SIM_API_KEY": "env-key",
        "ESIMGO_SIM_RATE_LIMIT": "7",
        "ESIMGO_SIM_BALANCE": "12.50",
        "ESIMGO_SIM_CALLBACK_URL": "http://127.0.0.1:9/cb",
    }
    config = SimConfig.from_env(env)
    assert (config.api_key, config.rate_limit_per_second, config.initial_balance) == (
        "env-key",
        7,
        Decimal("12.50"),
    )
    assert config.callback_url == "http://127.0.0.1:9/cb"
    assert config.faults == FaultSettings(
        endpoints={"GET /catalogue": FaultRule(fail_next=1, error_status=429)}
    )
    assert SimConfig.from_env(env, api_key="cli-key").api_key == "cli-key"  # explicit options win
    with running_sim(config) as sim:
        first = sim.api.get("/catalogue")
        assert first.status_code == 429 and first.headers["Retry-After"] == "1"
        assert sim.api.get("/catalogue").status_code == 200


def test_cli_runs_uvicorn_and_logs_base_url(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "ESIMGO_SIM_API_KEY": "env-key",
        "ESIMGO_SIM_BALANCE": "50",
        "ESIMGO_SIM_FAULTS": json.dumps({"endpoints": {"GET /organisation": {"fail_next": 1}}}),
    }
    log = tmp_path / "sim.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ttelgo.sandbox.esimgo_sim", "--port", str(port), "--api-key", "cli-key"],
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 15
            while True:
                try:
                    if httpx.get(f"{base}/_sim/health").status_code == 200:
                        break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and proc.poll() is None, log.read_text()
                    time.sleep(0.05)
            headers = {"X-API-Key": "cli-key"}
            assert httpx.get(f"{base}/v2.4/organisation", headers={"X-API-Key": "env-key"}).status_code == 401
            assert httpx.get(f"{base}/v2.4/organisation", headers=headers).status_code == 500  # env fault
            org = httpx.get(f"{base}/v2.4/organisation", headers=headers).json()["organisations"][0]
            assert org["balance"] == 50
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert f"http://127.0.0.1:{port}/v2.4" in log.read_text()


# ----- stats and reset -----
def test_stats_count_requests_and_supplier_orders(sim: Sim) -> None:
    sim.order(GB_1_7D, 2, kind="validate")
    order = sim.order(GB_1_7D, 2).json()
    for iccid in order["order"][0]["iccids"]:
        sim.api.get(f"/esims/{iccid}")
    stats = sim.stats()
    assert stats["orders"]["transactions"] == 1 and stats["orders"]["validations"] == 1
    assert stats["orders"]["by_bundle"] == {GB_1_7D: 2} and stats["orders"]["bundles_ordered"] == 2
    assert stats["requests"]["POST /orders"] == 2 and stats["requests"]["GET /esims/{iccid}"] == 2
    assert stats["responses"]["GET /esims/{iccid}"] == {"200": 2}


def test_reset_restores_initial_state(sim: Sim) -> None:
    catalogue_before = sim.api.get("/catalogue", params={"perPage": 20}).json()
    sim.order(GB_1_7D)
    sim.admin.put("/organisation/balance", json={"balance": "5"})
    put_faults(sim, {"default": {"latency_ms": 1}})
    assert sim.admin.post("/reset").json() == {"status": "reset"}
    assert sim.balance() == Decimal("100000") and sim.api.get("/orders").json()["rows"] == 0
    assert sim.admin.get("/faults").json()["default"]["latency_ms"] == 0
    assert sim.api.get("/catalogue", params={"perPage": 20}).json() == catalogue_before
    assert sim.stats()["orders"]["transactions"] == 0


# ----- usage callbacks -----
def verify(received: list, key: str = API_KEY) -> list[dict]:
    bodies = []
    for r in received:
        expected = base64.b64encode(hmac.new(key.encode(), r.body, hashlib.sha256).digest()).decode()
        assert r.headers["x-signature-sha256"] == expected
        bodies.append(json.loads(r.body))
    return bodies


def use(sim: Sim, iccid: str, nbytes: int) -> dict:
    response = sim.admin.post(f"/esims/{iccid}/usage", json={"bytes": nbytes})
    assert response.status_code == 200, response.text
    return response.json()


def test_usage_callbacks_first_use_then_each_threshold_once(sim: Sim, receiver: CallbackReceiver) -> None:
    iccid = new_esim(sim)
    steps = [
        (5_000_000, [("FirstUse", None)]),
        (10_000_000, [("Utilisation", 1)]),
        (100_000_000, []),
        (390_000_000, [("Utilisation", 50)]),
        (300_000_000, [("Utilisation", 80)]),
        (190_000_000, []),
        (5_000_000, [("Utilisation", 100)]),
    ]
    for nbytes, expected in steps:
        result = use(sim, iccid, nbytes)
        assert [(c["alertType"], c["threshold"]) for c in result["callbacks"]] == expected
        assert all(c["status"] == 204 and c["delivered"] for c in result["callbacks"])
    bodies = verify(receiver.received)
    assert [b["alertType"] for b in bodies] == ["FirstUse"] + ["Utilisation"] * 4
    assert [b["bundle"]["remainingQuantity"] for b in bodies] == [
        995_000_000,
        985_000_000,
        495_000_000,
        195_000_000,
        0,
    ]
    bundle = bodies[-1]["bundle"]
    assert bundle["name"] == GB_1_7D and bundle["initialQuantity"] == GB and bundle["unlimited"] is False
    assert bodies[0]["iccid"] == iccid and bundle["startTime"] and bundle["endTime"] and bundle["reference"]
    assignment = sim.api.get(f"/esims/{iccid}/bundles").json()["bundles"][0]["assignments"][0]
    assert assignment["bundleState"] == "depleted" and assignment["remainingQuantity"] == 0
    details = sim.api.get(f"/esims/{iccid}").json()
    assert details["profileStatus"] == "Installed" and isinstance(details["firstInstalledDateTime"], int)
    exhausted = sim.admin.post(f"/esims/{iccid}/usage", json={"bytes": 1})
    assert exhausted.status_code == 409 and len(receiver.received) == 5


def test_usage_jump_sends_every_crossed_threshold(sim: Sim, receiver: CallbackReceiver) -> None:
    iccid = new_esim(sim)
    result = use(sim, iccid, 900_000_000)
    assert [(c["alertType"], c["threshold"]) for c in result["callbacks"]] == [
        ("FirstUse", None),
        ("Utilisation", 1),
        ("Utilisation", 50),
        ("Utilisation", 80),
    ]
    assert result["consumed"] == 900_000_000 and len(verify(receiver.received)) == 4


def test_callback_retries_then_delivers(sim: Sim, receiver: CallbackReceiver) -> None:
    iccid = new_esim(sim)
    receiver.fail_next = 1
    (callback,) = use(sim, iccid, 1000)["callbacks"]
    assert callback == {
        "alertType": "FirstUse",
        "threshold": None,
        "status": 204,
        "attempts": 2,
        "delivered": True,
        "error": None,
    }
    assert len(receiver.received) == 2 and receiver.received[0].body == receiver.received[1].body
    assert sim.stats()["callbacks"] == {"attempted": 1, "delivered": 1}


def test_callback_url_settable_at_run_time(sim: Sim, receiver: CallbackReceiver) -> None:
    iccid = new_esim(sim)
    assert sim.admin.put("/callback-url", json={"url": None}).json() == {"url": None}
    (undelivered,) = use(sim, iccid, 1000)["callbacks"]
    assert undelivered["delivered"] is False and undelivered["status"] is None and receiver.received == []
    sim.admin.put("/callback-url", json={"url": receiver.url})
    assert use(sim, iccid, 10_000_000)["callbacks"][0]["status"] == 204
    assert [b["alertType"] for b in verify(receiver.received)] == ["Utilisation"]
