"""Whole-ledger checks: the books balance, wallets' cached totals match the transfers, floors and
statements hold.

Read-only and lock-free. Each rule is one SQL statement, so each sees one consistent snapshot even under
READ COMMITTED while transfers keep committing; it scans every account and transfer, so run it from a
CLI or a test, not per request.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ttelgo.models import Account, Transfer

# A wallet's cached totals against the same recomputed from the immutable transfers (view
# `ledger_movements`); platform accounts keep none (their totals are that view's).
_RECOMPUTED_TOTALS = text(
    """
    SELECT a.id, a.debits_posted_minor, a.credits_posted_minor,
           a.debits_pending_minor, a.credits_pending_minor,
           coalesce(m.debits_posted_minor, 0), coalesce(m.credits_posted_minor, 0),
           coalesce(m.debits_pending_minor, 0), coalesce(m.credits_pending_minor, 0)
    FROM accounts a LEFT JOIN ledger_movements m ON m.account_id = a.id
    WHERE a.vendor_id IS NOT NULL
      AND (a.debits_posted_minor, a.credits_posted_minor, a.debits_pending_minor, a.credits_pending_minor)
          IS DISTINCT FROM (coalesce(m.debits_posted_minor, 0), coalesce(m.credits_posted_minor, 0),
                            coalesce(m.debits_pending_minor, 0), coalesce(m.credits_pending_minor, 0))
    ORDER BY a.id
    """
)

# Wallets' cached totals plus platform accounts' derived ones: any drift of a wallet shows here.
_UNBALANCED_CURRENCIES = text(
    """
    SELECT a.currency,
           sum(t.credits_posted_minor - t.debits_posted_minor)::bigint AS posted,
           sum(t.credits_pending_minor - t.debits_pending_minor)::bigint AS pending
    FROM accounts a JOIN account_totals t ON t.account_id = a.id GROUP BY a.currency
    HAVING sum(t.credits_posted_minor - t.debits_posted_minor) <> 0
        OR sum(t.credits_pending_minor - t.debits_pending_minor) <> 0
    ORDER BY a.currency
    """
)

_BELOW_FLOOR = text(
    """
    SELECT id, credits_posted_minor - debits_posted_minor - debits_pending_minor, overdraft_limit_minor
    FROM accounts
    WHERE enforce_floor
      AND credits_posted_minor - debits_posted_minor - debits_pending_minor < -overdraft_limit_minor
    ORDER BY id
    """
)

# The newest statement row per wallet (ids grow in commit order per wallet: writers hold its row lock).
_STATEMENT_MISMATCH = text(
    """
    SELECT a.id, a.credits_posted_minor - a.debits_posted_minor,
           a.credits_posted_minor - a.debits_posted_minor - a.debits_pending_minor,
           e.balance_after_minor, e.available_after_minor
    FROM accounts a
    LEFT JOIN LATERAL (
        SELECT balance_after_minor, available_after_minor FROM vendor_ledger_entries
        WHERE account_id = a.id ORDER BY id DESC LIMIT 1
    ) e ON true
    WHERE a.kind = 'VENDOR_WALLET'
      AND (coalesce(e.balance_after_minor, 0), coalesce(e.available_after_minor, 0))
          IS DISTINCT FROM (a.credits_posted_minor - a.debits_posted_minor,
                            a.credits_posted_minor - a.debits_posted_minor - a.debits_pending_minor)
    ORDER BY a.id
    """
)

# Resolutions that name something other than a PENDING hold over the same accounts, or post too much.
_BAD_RESOLUTIONS = text(
    """
    SELECT r.id, r.pending_id, p.kind
    FROM transfers r LEFT JOIN transfers p ON p.id = r.pending_id
    WHERE r.pending_id IS NOT NULL
      AND (p.kind IS DISTINCT FROM 'PENDING'
           OR (r.debit_account_id, r.credit_account_id, r.currency)
              IS DISTINCT FROM (p.debit_account_id, p.credit_account_id, p.currency)
           OR r.amount_minor > p.amount_minor
           OR (r.kind = 'VOID_PENDING' AND r.amount_minor <> p.amount_minor))
    ORDER BY r.id
    """
)

_TWICE_RESOLVED = text(
    """
    SELECT pending_id, string_agg(id, ', ' ORDER BY id) FROM transfers
    WHERE pending_id IS NOT NULL GROUP BY pending_id HAVING count(*) > 1 ORDER BY pending_id
    """
)

_CURRENCY_MISMATCH = text(
    """
    SELECT t.id, t.currency, a.id, a.currency FROM transfers t
    JOIN accounts a ON a.id IN (t.debit_account_id, t.credit_account_id)
    WHERE a.currency <> t.currency ORDER BY t.id
    """
)


async def check_invariants(session: AsyncSession) -> list[str]:
    """Every broken rule as a sentence; [] when the ledger is sound."""
    violations: list[str] = []
    for currency, posted, pending in await session.execute(_UNBALANCED_CURRENCIES):
        violations.append(f"{currency}: accounts do not sum to zero (posted {posted}, pending {pending})")
    for row in await session.execute(_RECOMPUTED_TOTALS):
        account_id, cached, recomputed = row[0], tuple(row[1:5]), tuple(row[5:9])
        violations.append(
            f"wallet {account_id}: cached totals (debits posted, credits posted, debits pending, "
            f"credits pending) {cached} differ from the transfers' {recomputed}"
        )
    for account_id, available, limit in await session.execute(_BELOW_FLOOR):
        violations.append(f"account {account_id}: available {available} is below its floor of {-limit}")
    for account_id, balance, available, entry_balance, entry_available in await session.execute(
        _STATEMENT_MISMATCH
    ):
        violations.append(
            f"wallet {account_id}: balance {balance} / available {available} but its newest statement row "
            f"says {entry_balance} / {entry_available}"
        )
    for pending_id, resolutions in await session.execute(_TWICE_RESOLVED):
        violations.append(f"pending transfer {pending_id} is resolved more than once: {resolutions}")
    for transfer_id, pending_id, pending_kind in await session.execute(_BAD_RESOLUTIONS):
        violations.append(
            f"transfer {transfer_id} resolves {pending_id} ({pending_kind or 'missing'}) "
            "but does not match that hold"
        )
    for transfer_id, currency, account_id, account_currency in await session.execute(_CURRENCY_MISMATCH):
        violations.append(
            f"transfer {transfer_id} in {currency} touches account {account_id} in {account_currency}"
        )
    return violations


@dataclass(frozen=True)
class LedgerSize:
    accounts: int
    transfers: int


async def ledger_size(session: AsyncSession) -> LedgerSize:
    return LedgerSize(
        accounts=await session.scalar(select(func.count()).select_from(Account)) or 0,
        transfers=await session.scalar(select(func.count()).select_from(Transfer)) or 0,
    )
