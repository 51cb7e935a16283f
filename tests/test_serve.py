"""`python -m api.serve` takes LOG_LEVEL as Python's logging does (issue 16 review): uvicorn's own names
are only a subset, and WARN, FATAL or NOTSET once stopped the API from starting."""

from __future__ import annotations

import logging

import pytest

from api.serve import server_config
from tests.conftest import make_settings
from ttelgo.settings import ConfigurationError


@pytest.mark.parametrize(
    ("name", "level"),
    [
        ("WARN", logging.WARNING),
        ("FATAL", logging.CRITICAL),
        ("NOTSET", logging.NOTSET),
        ("warning", logging.WARNING),
        ("DEBUG", logging.DEBUG),
        ("Info", logging.INFO),
    ],
)
def test_every_logging_level_name_configures_uvicorn(name: str, level: int) -> None:
    # uvicorn looks a name up in its own table (KeyError: 'warn' at start-up); a number it takes as it is.
    assert server_config(make_settings(log_level=name)).log_level == level


def test_a_level_logging_does_not_know_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="LOG_LEVEL"):
        server_config(make_settings(log_level="LOUD"))
