"""The B2C world (tests/b2c/conftest.py) with its SMTP server, for the e-mail tests."""

from tests.b2c.conftest import b2c, localstripe, mail_server  # noqa: F401 (fixtures)
