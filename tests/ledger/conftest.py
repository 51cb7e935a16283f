"""The card and wallet world of tests/b2c (localstripe, the API, a worker), for the supplier cost tests."""

from tests.b2c.conftest import b2c, localstripe  # noqa: F401
