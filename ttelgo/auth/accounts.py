"""Login accounts by realm: users (customers and staff) and vendor_users (vendor team members)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ttelgo.auth.tokens import PrincipalKind, TokenClaims
from ttelgo.models import User, UserRole, VendorUser
from ttelgo.models.identity import AccountRealm

Account = User | VendorUser
MODELS: dict[AccountRealm, type[User] | type[VendorUser]] = {
    AccountRealm.USER: User,
    AccountRealm.VENDOR_USER: VendorUser,
}


def realm_of(account: Account) -> AccountRealm:
    return AccountRealm.VENDOR_USER if isinstance(account, VendorUser) else AccountRealm.USER


def realm_of_kind(kind: PrincipalKind) -> AccountRealm:
    return AccountRealm.VENDOR_USER if kind is PrincipalKind.VENDOR_USER else AccountRealm.USER


def claims_for(account: Account, session_id: uuid.UUID) -> TokenClaims:
    """What an access token says about the account, read afresh (a role may have changed since login)."""
    if isinstance(account, VendorUser):
        return TokenClaims(
            account.id, PrincipalKind.VENDOR_USER, account.role.value, account.vendor_id, session_id
        )
    kind = PrincipalKind.ADMIN if account.role is UserRole.ADMIN else PrincipalKind.CUSTOMER
    return TokenClaims(account.id, kind, account.role.value, session_id=session_id)


async def by_email(session: AsyncSession, realm: AccountRealm, email: str) -> Account | None:
    """The live (not deleted) account with this e-mail, compared case-insensitively."""
    model = MODELS[realm]
    return await session.scalar(
        select(model).where(func.lower(model.email) == email.lower(), model.deleted_at.is_(None))
    )


async def active(session: AsyncSession, realm: AccountRealm, account_id: uuid.UUID) -> Account | None:
    """The account if it exists, is not deleted and is not deactivated."""
    account = await session.get(MODELS[realm], account_id)
    return account if account is not None and not account.deleted_at and account.is_active else None
