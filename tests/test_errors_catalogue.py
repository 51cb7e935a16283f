"""The error catalogue: codes and numbers are unique and each number sits in its family's range."""

from __future__ import annotations

from ttelgo.errors import CATALOGUE, RANGES


def test_codes_and_numbers_are_unique_and_ranged() -> None:
    numbers = [spec.number for spec in CATALOGUE.values()]
    assert len(numbers) == len(set(numbers))
    families = set(RANGES.values())
    for spec in CATALOGUE.values():
        assert spec.family in families
        assert 400 <= spec.status <= 599
    expected = {
        "general",
        "auth",
        "rate_limit",
        "user",
        "vendor",
        "order",
        "payment",
        "esim",
        "bundle",
        "supplier",
        "idempotency",
        "webhook",
        "business",
    }
    assert {spec.family for spec in CATALOGUE.values()} == expected
