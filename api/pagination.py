"""Page-number pagination shared by every list endpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.schemas.fields import PageNumber

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    page: int
    page_size: int
    total: int


@dataclass(frozen=True)
class PageParams:
    page: int
    page_size: int

    async def fetch_page(self, session: AsyncSession, query: Select[Any], schema: type[T]) -> Page[T]:
        """Runs `query` for this page, counts all its rows, and shapes each row with `schema`."""
        total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
        rows = await session.scalars(query.limit(self.page_size).offset((self.page - 1) * self.page_size))
        items = [schema.model_validate(row) for row in rows]  # type: ignore[attr-defined]
        return Page[schema](items=items, page=self.page, page_size=self.page_size, total=int(total or 0))  # type: ignore[valid-type]


def _page_params(
    page: Annotated[PageNumber, Query()] = 1, page_size: Annotated[int, Query(ge=1, le=100)] = 20
) -> PageParams:
    return PageParams(page, page_size)


Paging = Annotated[PageParams, Depends(_page_params)]
