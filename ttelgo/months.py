"""Calendar months as the API, the invoices and their workflow spell them: `YYYY-MM` (UTC)."""

from __future__ import annotations

import re

MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
MONTH = re.compile(MONTH_PATTERN)
