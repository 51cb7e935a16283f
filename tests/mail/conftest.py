"""The B2C world (tests/b2c/conftest.py) with its SMTP server, for the e-mail tests; the B2B world
(tests/b2b/conftest.py) for a test that runs its own worker processes."""

from tests.b2b.conftest import b2b  # noqa: F401 (fixture)
from tests.b2c.conftest import b2c, localstripe, mail_server  # noqa: F401 (fixtures)
