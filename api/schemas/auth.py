"""Login shapes."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field


class Login(BaseModel):
    # Plain text, not EmailStr: every existing account must be able to log in, whatever its domain.
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=200)


class AccessToken(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    refresh_token: str | None = Field(default=None, description="exchange at /api/v1/auth/refresh")


class Refresh(BaseModel):
    refresh_token: str


class Register(BaseModel):
    email: EmailStr
    password: str = Field(min_length=12, max_length=200)
    full_name: str | None = Field(default=None, max_length=200)


class Me(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str | None
    role: str
    created_at: datetime
