"""Login shapes."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Login(BaseModel):
    # Plain text, not EmailStr: every existing account must be able to log in, whatever its domain.
    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=200)


class AccessToken(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
