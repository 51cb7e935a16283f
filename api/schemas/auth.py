"""Login, session and password-reset shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from api.schemas.fields import Password, line

# Plain text, not EmailStr: every existing account must be able to log in, whatever its domain.
LoginEmail = Annotated[str, line(320, min_length=3)]
# Longer than any token we issue, so a wrong kind of token (a JWT) is refused as a wrong token, with 401.
OpaqueToken = Annotated[str, line(1000, min_length=1)]


class Login(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"email": "ada@example.com", "password": "correct horse battery staple"}]
        }
    )

    email: LoginEmail
    password: Annotated[str, line(200, min_length=1)]


class AccessToken(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    refresh_token: str = Field(
        description="single use: exchange it at /api/v1/auth/refresh for a new pair (reusing one ends the "
        "session)"
    )


class Refresh(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"refresh_token": "ttr_Zk3v9QeL0pXw2sT8yB1nR4uH7cJ5mA6dF0gK9iO2lE"}]}
    )

    refresh_token: OpaqueToken


class Register(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.com",
                    "password": "correct horse battery staple",
                    "full_name": "Ada Lovelace",
                }
            ]
        }
    )

    email: EmailStr = Field(max_length=320)
    password: Password
    full_name: Annotated[str, line(200)] | None = None


class Me(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str | None
    role: str
    created_at: datetime


class ResetRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"email": "ada@example.com"}]})

    email: LoginEmail


class ResetRequested(BaseModel):
    detail: str = "If an account has this e-mail, a reset code is on its way to it."


class ResetConfirm(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "token": "ttp_Qm8sW1xZ4vB7nC0kL3jH6gF9dS2aP5oI8uY1tR4eW7q",
                    "new_password": "correct horse battery staple",
                }
            ]
        }
    )

    token: OpaqueToken = Field(description="the code from the reset e-mail")
    new_password: Password
