"""The simulator as `ttelgo dev` runs it (its state folder in the data dir): a restart never issues an
ICCID or matching id that an earlier start issued, even from the same seed."""

import os
import random
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from ttelgo.sandbox.esimgo_sim.identifiers import IdentifierFactory, is_luhn_valid
from ttelgo.sandbox.processes import ManagedProcess, free_port, wait_until
from ttelgo.sandbox.stack import PROJECT_ROOT, esimgo_sim_args

KEY = "restart-test-key"
ICCID = re.compile(r"[0-9]{18,22}")  # the database's CHECK on esims.iccid


@contextmanager
def dev_sim(data_dir: Path) -> Iterator[httpx.Client]:
    """One start of the simulator, with the arguments `ttelgo dev` gives it; a client for its API."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESIMGO_SIM_")}
    env.update(ESIMGO_SIM_API_KEY=KEY, ESIMGO_SIM_SEED="42", ESIMGO_SIM_RATE_LIMIT="0")
    process = ManagedProcess(
        "esimgo-sim",
        [sys.executable, *esimgo_sim_args(port, data_dir)],
        data_dir / "esimgo-sim.log",
        env,
        PROJECT_ROOT,
    ).start()
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}/v2.4", headers={"X-API-Key": KEY}, timeout=10
        ) as api:
            wait_until(lambda: api.get("/organisation").is_success, 30, "waiting for the simulator", process)
            yield api
    finally:
        process.stop()


def buy_esims(api: httpx.Client, quantity: int) -> list[dict]:
    line = {"type": "bundle", "quantity": quantity, "item": "esim_1GB_7D_GB_V2", "allowReassign": False}
    response = api.post("/orders", json={"type": "transaction", "assign": True, "order": [line]})
    assert response.status_code == 200, response.text
    return response.json()["order"][0]["esims"]


def test_two_starts_on_the_same_data_dir_never_issue_the_same_identifiers(tmp_path: Path) -> None:
    issued: list[list[dict]] = []
    for _ in range(2):
        with dev_sim(tmp_path) as api:
            issued.append(buy_esims(api, 5) + buy_esims(api, 5))
    first, second = ({e["iccid"] for e in run} for run in issued)
    assert len(first) == len(second) == 10
    assert first.isdisjoint(second), first & second
    matching = [{e["matchingId"] for e in run} for run in issued]
    assert matching[0].isdisjoint(matching[1])
    for iccid in first | second:
        assert ICCID.fullmatch(iccid) and is_luhn_valid(iccid), iccid
    assert (tmp_path / "esimgo-sim" / "identifiers.json").exists()


def test_generations_keep_identifiers_apart_and_within_iccid_length() -> None:
    def iccids(generation: int | None, n: int = 50) -> list[str]:
        factory = IdentifierFactory(random.Random("42:ids"), generation)
        return [factory.iccid() for _ in range(n)]

    assert iccids(None) == iccids(None)  # without a generation: the seed alone decides, as in tests
    assert set(iccids(1)).isdisjoint(iccids(2))
    for generation, length in ((1, 19), (99_999, 19), (100_000, 20), (99_999_999, 22)):
        for iccid in iccids(generation, 3):
            assert len(iccid) == length and is_luhn_valid(iccid), (generation, iccid)
    with pytest.raises(ValueError):
        IdentifierFactory(random.Random(0), 100_000_000)


def test_a_reset_under_a_state_dir_issues_new_identifiers_too(tmp_path: Path) -> None:
    """A reset forgets the simulator's eSIMs, not the database's: with a state folder it moves on."""
    with dev_sim(tmp_path) as api:
        before = {e["iccid"] for e in buy_esims(api, 3)}
        assert httpx.post(api.base_url.copy_with(path="/_sim/reset")).status_code == 200
        after = {e["iccid"] for e in buy_esims(api, 3)}
    assert len(before) == len(after) == 3 and before.isdisjoint(after)
