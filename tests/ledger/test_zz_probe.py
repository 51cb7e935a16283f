import asyncio, collections
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test
from tests.ledger import test_ledger_stateful as m

seen = collections.Counter()

@pytest.mark.parametrize("n", range(3))
def test_probe(postgres, n, monkeypatch):
    orig = m.LedgerMachine._call
    def _call(self, call):
        try:
            r = orig(self, call)
            seen[(call.kind, "ok", "partial" if call.kind=="post" and call.amount is not None and call.amount < self._posted(replace_none(call)) else "")] += 1
            return r
        except Exception as e:
            seen[(call.kind, type(e).__name__, "")] += 1
            raise
    def replace_none(c):
        import dataclasses
        return dataclasses.replace(c, amount=None)
    monkeypatch.setattr(m.LedgerMachine, "_call", _call)
    loop = asyncio.new_event_loop()
    machine = type("X", (m.LedgerMachine,), {"loop": loop, "postgres": postgres})
    try:
        run_state_machine_as_test(machine, settings=settings(max_examples=30, stateful_step_count=25, deadline=None,
            suppress_health_check=[HealthCheck.too_slow], database=None, phases=[Phase.generate]))
    finally:
        loop.close()
        print("PROBE", sorted(seen.items()))
        seen.clear()
