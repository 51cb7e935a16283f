"""Top-up tests: the B2C world (card) and the B2B world (wallet), reused."""

from tests.b2b.conftest import b2b  # noqa: F401 (fixture)
from tests.b2c.conftest import b2c, localstripe  # noqa: F401 (fixtures)
from tests.webhooks_out.conftest import receiver  # noqa: F401 (fixture)
