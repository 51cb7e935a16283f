"""Admin: any vendor's wallet statement, read exactly as the vendor reads its own (`api.statements`)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from api.deps import Admin
from api.pagination import Paging
from api.schemas.statements import StatementOut
from api.statements import CSV_RESPONSE, StatementPeriod, read_statement

router = APIRouter(prefix="/api/v1/admin/vendors", tags=["admin: vendors"])


@router.get(
    "/{vendor_id}/ledger",
    response_model=StatementOut,
    summary="A vendor's wallet statement for a period (deactivated vendors too), as JSON or CSV",
    responses=CSV_RESPONSE,
)
async def vendor_statement(
    request: Request, vendor_id: uuid.UUID, _: Admin, period: StatementPeriod, paging: Paging
) -> StatementOut | StreamingResponse:
    return await read_statement(request, vendor_id, period, paging)
