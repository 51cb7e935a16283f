"""Customer accounts as admins see them."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class CustomerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str | None
    email_verified_at: datetime | None
    last_login_at: datetime | None
    created_at: datetime
    deleted_at: datetime | None = Field(default=None, description="set while the customer is deactivated")
