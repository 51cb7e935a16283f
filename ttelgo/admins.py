"""Staff accounts: the dev stack's bootstrap admin (and, later, the production CLI) go through here."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ttelgo.auth.passwords import hash_password, verify_password
from ttelgo.models import User, UserRole


async def ensure_admin(session: AsyncSession, email: str, password: str) -> bool:
    """Create the admin, or reset its password to `password`; True when the account was created."""
    user = await session.scalar(
        select(User).where(func.lower(User.email) == email.lower(), User.deleted_at.is_(None))
    )
    if user is None:
        session.add(
            User(email=email, password_hash=hash_password(password), role=UserRole.ADMIN, full_name="Admin")
        )
        await session.commit()
        return True
    changed = user.role is not UserRole.ADMIN or not verify_password(user.password_hash, password)
    if changed:
        user.role = UserRole.ADMIN
        user.password_hash = hash_password(password)
        await session.commit()
    return False
