"""Constrained types for what clients send: text that fits its column and carries no control characters,
integers that fit the database (and leave room to add them up). Request schemas and query parameters use
these, so a hostile value is a 422 at the edge instead of a database error (a 500) or a poisoned workflow.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, StringConstraints

# A single line refuses every C0 control character and DEL; free text (reasons) keeps tab and newlines.
# PostgreSQL cannot store NUL in text at all, and the others have no business in names or codes.
LINE_CONTROLS = "\x00-\x1f\x7f"
TEXT_CONTROLS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f"
LINE_CONTROL_RE = re.compile(f"[{LINE_CONTROLS}]")
TEXT_CONTROL_RE = re.compile(f"[{TEXT_CONTROLS}]")
_LINE_PATTERN = r"^[^\x00-\x1f\x7f]*$"  # LINE_CONTROLS spelled for JSON Schema (and OpenAPI readers)
_TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"

INT64_MAX = 2**63 - 1
MAX_MINOR = 10**15
"""The largest amount (minor units) any request may name: far above any real price, balance or limit, and
far enough below the BIGINT columns' 2^63 that sums of such amounts cannot overflow."""
MAX_PAGE = 100_000
"""Beyond it a page offset scans millions of rows; nobody pages that far (filter instead)."""


def line(max_length: int, min_length: int = 0) -> StringConstraints:
    """One line of text of at most `max_length` characters (the column's length): a name, a code."""
    return StringConstraints(min_length=min_length, max_length=max_length, pattern=_LINE_PATTERN)


def text(max_length: int, min_length: int = 0) -> StringConstraints:
    """Free text that may span lines (a reason, a note), at most `max_length` characters."""
    return StringConstraints(min_length=min_length, max_length=max_length, pattern=_TEXT_PATTERN)


Reason = Annotated[str, text(1000, min_length=3)]
"""Why an operator (or vendor) acts: kept in `audit_logs.reason` and `refunds.reason`, String(1000)."""
OptionalReason = Annotated[str, text(1000)]
BundleCode = Annotated[str, line(100, min_length=1)]
CustomerReference = Annotated[str, line(200)]
Name = Annotated[str, line(200, min_length=1)]
KeyName = Annotated[str, line(100, min_length=1)]
Password = Annotated[str, line(200, min_length=12)]

MinorAmount = Annotated[int, Field(ge=-MAX_MINOR, le=MAX_MINOR)]
PositiveAmount = Annotated[int, Field(gt=0, le=MAX_MINOR)]
NonNegativeAmount = Annotated[int, Field(ge=0, le=MAX_MINOR)]
PageNumber = Annotated[int, Field(ge=1, le=MAX_PAGE)]
