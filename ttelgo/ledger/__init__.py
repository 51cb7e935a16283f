"""The double-entry ledger: wallets with guarded totals, immutable transfers, two-phase holds."""

from ttelgo.ledger.accounts import (
    AccountTotals,
    WalletBalance,
    account_totals,
    platform_account,
    sync_wallet_limits,
    vendor_wallet,
    wallet_balance,
)
from ttelgo.ledger.errors import (
    AccountNotFound,
    InsufficientFunds,
    LedgerError,
    PendingAlreadyResolved,
    PendingNotFound,
    TransferConflict,
)
from ttelgo.ledger.invariants import LedgerSize, check_invariants, ledger_size
from ttelgo.ledger.transfers import TransferSpec, create_transfer, post_pending, void_pending

__all__ = [
    "AccountNotFound",
    "AccountTotals",
    "InsufficientFunds",
    "LedgerError",
    "LedgerSize",
    "PendingAlreadyResolved",
    "PendingNotFound",
    "TransferConflict",
    "TransferSpec",
    "WalletBalance",
    "account_totals",
    "check_invariants",
    "create_transfer",
    "ledger_size",
    "platform_account",
    "post_pending",
    "sync_wallet_limits",
    "vendor_wallet",
    "void_pending",
    "wallet_balance",
]
