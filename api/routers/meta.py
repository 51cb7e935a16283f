"""The error catalogue, so front ends and vendors can map codes without reading our source."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from ttelgo.errors import CATALOGUE

router = APIRouter(prefix="/api/v1", tags=["meta"])


class ErrorEntry(BaseModel):
    code: str
    number: int
    status: int
    title: str
    family: str


@router.get("/errors", response_model=list[ErrorEntry], summary="Every error code the API can answer with")
async def list_errors() -> list[ErrorEntry]:
    return [
        ErrorEntry(code=s.code, number=s.number, status=s.status, title=s.title, family=s.family)
        for s in sorted(CATALOGUE.values(), key=lambda s: s.number)
    ]
