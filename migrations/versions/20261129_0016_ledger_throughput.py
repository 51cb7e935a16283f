"""Ledger without hot rows (issue 16): a transfer is one server-side function call, and only wallets
keep cached totals.

Platform accounts have no floor, so nothing needs their balance at the moment of a transfer: their totals
are no longer updated (that row lock serialised every order) but derived from the transfers by the views
`ledger_movements` and `account_totals`. Wallets keep their guarded totals, updated under their row lock
for the few microseconds the function needs. `ledger_create_transfer` and `ledger_resolve_pending` do in
one statement what the kernel did in about eight round trips; refusals are raised with SQLSTATEs of class
TL, so a refused transfer writes nothing. `ledger_apply` runs many of them in one statement (the kernel's
batches, ttelgo/ledger/batches.py), each item's refusal returned instead of raised.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29 14:00:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NO_PLATFORM_TOTALS = (
    "vendor_id IS NOT NULL OR (debits_posted_minor = 0 AND credits_posted_minor = 0 "
    "AND debits_pending_minor = 0 AND credits_pending_minor = 0)"
)

# Per account, its four totals recomputed from the immutable transfers: SINGLE and POST_PENDING are
# posted, a PENDING is pending until a POST/VOID names it. No CTE: a filter on account_id is pushed down
# to the transfers indexes.
_MOVEMENTS = """
CREATE VIEW ledger_movements AS
SELECT account_id,
       sum(debits_posted)::bigint AS debits_posted_minor,
       sum(credits_posted)::bigint AS credits_posted_minor,
       sum(debits_pending)::bigint AS debits_pending_minor,
       sum(credits_pending)::bigint AS credits_pending_minor
FROM (
    SELECT t.debit_account_id AS account_id,
           CASE WHEN t.kind IN ('SINGLE', 'POST_PENDING') THEN t.amount_minor ELSE 0 END AS debits_posted,
           0::bigint AS credits_posted,
           CASE WHEN t.kind = 'PENDING' AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = t.id)
                THEN t.amount_minor ELSE 0 END AS debits_pending,
           0::bigint AS credits_pending
    FROM transfers t
    UNION ALL
    SELECT t.credit_account_id,
           0,
           CASE WHEN t.kind IN ('SINGLE', 'POST_PENDING') THEN t.amount_minor ELSE 0 END,
           0,
           CASE WHEN t.kind = 'PENDING' AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = t.id)
                THEN t.amount_minor ELSE 0 END
    FROM transfers t
) sides
GROUP BY account_id
"""

# What every account holds: a wallet's cached totals, a platform account's derived ones. Two branches, so a
# wallet's row never reaches the aggregate: filtered on a wallet's id, the platform branch finds no account
# and its lateral aggregate never runs. (The kernel reads a wallet's cached columns itself anyway.)
_TOTALS = """
CREATE VIEW account_totals AS
SELECT id AS account_id, debits_posted_minor, credits_posted_minor, debits_pending_minor, credits_pending_minor
FROM accounts
WHERE vendor_id IS NOT NULL
UNION ALL
SELECT a.id,
       coalesce(m.debits_posted_minor, 0)::bigint,
       coalesce(m.credits_posted_minor, 0)::bigint,
       coalesce(m.debits_pending_minor, 0)::bigint,
       coalesce(m.credits_pending_minor, 0)::bigint
FROM accounts a
LEFT JOIN LATERAL (SELECT * FROM ledger_movements lm WHERE lm.account_id = a.id) m ON true
WHERE a.vendor_id IS NULL
"""

_FUNCTIONS = [
    # The fields of `existing` that differ from `expected` (Python attribute names), plus entry_type when
    # its statement rows were written with another type: the same id must mean the same movement.
    """
    CREATE FUNCTION ledger_replay(existing transfers, expected transfers, fields text[], entry_type text)
    RETURNS transfers LANGUAGE plpgsql AS $$
    DECLARE
        differing text[];
    BEGIN
        SELECT coalesce(array_agg(CASE f WHEN 'metadata' THEN 'metadata_' ELSE f END ORDER BY f), '{}')
        INTO differing
        FROM unnest(fields) f
        WHERE to_jsonb(existing) -> f IS DISTINCT FROM to_jsonb(expected) -> f;
        IF EXISTS (SELECT 1 FROM vendor_ledger_entries e
                   WHERE e.transfer_id = existing.id AND e.entry_type <> ledger_replay.entry_type) THEN
            differing := array_append(differing, 'entry_type');
        END IF;
        IF cardinality(differing) > 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'TL003',
                MESSAGE = format('transfer %s exists with different %s',
                                 existing.id, array_to_string(differing, ', ')),
                DETAIL = jsonb_build_object('transfer_id', existing.id, 'fields', differing);
        END IF;
        RETURN existing;
    END $$
    """,
    # Moves the cached totals of the wallet side(s) of the new transfer `t` and writes their statement
    # rows. Only wallets are locked (by the UPDATE, in id order), and only for this; a new debit (SINGLE
    # or PENDING) must leave the wallet at or above its floor. `released` is the hold a POST/VOID resolves.
    """
    CREATE FUNCTION ledger_book(t transfers, entry_type text, released bigint)
    RETURNS void LANGUAGE plpgsql AS $$
    DECLARE
        side record;
        w accounts;
        posted bigint := CASE WHEN t.kind IN ('SINGLE', 'POST_PENDING') THEN t.amount_minor ELSE 0 END;
        pending bigint := CASE t.kind WHEN 'PENDING' THEN t.amount_minor WHEN 'SINGLE' THEN 0
                                      ELSE -released END;
        -- As the vendor sees it, money in is positive; a void gives back to the debit side.
        signed bigint := CASE t.kind WHEN 'VOID_PENDING' THEN t.amount_minor ELSE -t.amount_minor END;
        available bigint;
    BEGIN
        FOR side IN
            SELECT a.id, a.id = t.debit_account_id AS is_debit FROM accounts a
            WHERE a.id IN (t.debit_account_id, t.credit_account_id) AND a.vendor_id IS NOT NULL
            ORDER BY a.id
        LOOP
            UPDATE accounts SET
                debits_posted_minor = debits_posted_minor + CASE WHEN side.is_debit THEN posted ELSE 0 END,
                credits_posted_minor = credits_posted_minor + CASE WHEN side.is_debit THEN 0 ELSE posted END,
                debits_pending_minor = debits_pending_minor + CASE WHEN side.is_debit THEN pending ELSE 0 END,
                credits_pending_minor = credits_pending_minor + CASE WHEN side.is_debit THEN 0 ELSE pending END,
                updated_at = now()
            WHERE id = side.id
            RETURNING * INTO w;
            available := w.credits_posted_minor - w.debits_posted_minor - w.debits_pending_minor;
            IF side.is_debit AND t.kind IN ('SINGLE', 'PENDING') AND w.enforce_floor
               AND available < -w.overdraft_limit_minor THEN
                RAISE EXCEPTION USING ERRCODE = 'TL001',
                    MESSAGE = format('account %s has %s available', w.id, available + t.amount_minor),
                    DETAIL = jsonb_build_object(
                        'available_minor', available + t.amount_minor,
                        'requested_minor', t.amount_minor,
                        'credit_limit_minor', w.overdraft_limit_minor,
                        'postpaid', EXISTS (SELECT 1 FROM vendors v
                                            WHERE v.id = w.vendor_id AND v.billing_mode = 'POSTPAID'));
            END IF;
            INSERT INTO vendor_ledger_entries (
                vendor_id, account_id, transfer_id, order_id, entry_type, amount_minor, currency,
                balance_after_minor, available_after_minor, description)
            VALUES (
                w.vendor_id, w.id, t.id, t.order_id, entry_type,
                CASE WHEN side.is_debit THEN signed ELSE -signed END, t.currency,
                w.credits_posted_minor - w.debits_posted_minor, available, t.memo);
        END LOOP;
    END $$
    """,
    # A SINGLE or PENDING transfer, exactly once per id: a replay returns the stored row (or raises
    # TL003 when its fields differ), a twin committing first is found through ON CONFLICT.
    """
    CREATE FUNCTION ledger_create_transfer(
        p_id text, p_kind text, p_debit uuid, p_credit uuid, p_amount bigint, p_currency text,
        p_code text, p_order_id uuid, p_memo text, p_metadata jsonb, p_timeout_at timestamptz,
        p_entry_type text)
    RETURNS transfers LANGUAGE plpgsql AS $$
    DECLARE
        fields constant text[] := ARRAY['kind', 'debit_account_id', 'credit_account_id', 'amount_minor',
            'currency', 'pending_id', 'code', 'order_id', 'memo', 'metadata', 'timeout_at'];
        expected transfers;
        t transfers;
        account_id uuid;
        account_currency text;
    BEGIN
        expected.id := p_id;
        expected.kind := p_kind;
        expected.debit_account_id := p_debit;
        expected.credit_account_id := p_credit;
        expected.amount_minor := p_amount;
        expected.currency := p_currency;
        expected.code := p_code;
        expected.order_id := p_order_id;
        expected.memo := p_memo;
        expected.metadata := p_metadata;
        expected.timeout_at := p_timeout_at;
        SELECT * INTO t FROM transfers WHERE id = p_id;
        IF FOUND THEN
            RETURN ledger_replay(t, expected, fields, p_entry_type);
        END IF;
        FOREACH account_id IN ARRAY ARRAY[least(p_debit, p_credit), greatest(p_debit, p_credit)] LOOP
            SELECT currency INTO account_currency FROM accounts WHERE id = account_id;
            IF NOT FOUND THEN
                RAISE EXCEPTION USING ERRCODE = 'TL002', MESSAGE = format('no account %s', account_id);
            END IF;
            IF account_currency <> p_currency THEN
                RAISE EXCEPTION USING ERRCODE = 'TL006', MESSAGE = format(
                    'transfer in %s but account %s is in %s', p_currency, account_id, account_currency);
            END IF;
        END LOOP;
        INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, amount_minor, currency,
                               code, order_id, memo, metadata, timeout_at)
        VALUES (p_id, p_kind, p_debit, p_credit, p_amount, p_currency,
                p_code, p_order_id, p_memo, p_metadata, p_timeout_at)
        ON CONFLICT DO NOTHING
        RETURNING * INTO t;
        IF NOT FOUND THEN
            SELECT * INTO t FROM transfers WHERE id = p_id;
            RETURN ledger_replay(t, expected, fields, p_entry_type);
        END IF;
        PERFORM ledger_book(t, p_entry_type, 0);
        RETURN t;
    END $$
    """,
    # POST_PENDING (all of the hold when p_amount is NULL, or part) or VOID_PENDING of the hold
    # p_pending_id, at most once: the unique index on pending_id decides between concurrent resolutions.
    """
    CREATE FUNCTION ledger_resolve_pending(
        p_id text, p_pending_id text, p_kind text, p_amount bigint, p_entry_type text)
    RETURNS transfers LANGUAGE plpgsql AS $$
    DECLARE
        fields constant text[] := ARRAY['kind', 'pending_id', 'amount_minor'];
        hold transfers;
        expected transfers;
        t transfers;
        resolver transfers;
    BEGIN
        SELECT * INTO hold FROM transfers WHERE id = p_pending_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'TL004', MESSAGE = format('no pending transfer %s', p_pending_id);
        END IF;
        IF hold.kind <> 'PENDING' THEN
            RAISE EXCEPTION USING ERRCODE = 'TL004',
                MESSAGE = format('transfer %s is %s, not PENDING', p_pending_id, hold.kind);
        END IF;
        expected.kind := p_kind;
        expected.pending_id := p_pending_id;
        expected.amount_minor := coalesce(p_amount, hold.amount_minor);
        IF expected.amount_minor > hold.amount_minor THEN
            RAISE EXCEPTION USING ERRCODE = 'TL006',
                MESSAGE = format('cannot post %s of a %s hold', expected.amount_minor, hold.amount_minor);
        END IF;
        INSERT INTO transfers (id, kind, debit_account_id, credit_account_id, amount_minor, currency,
                               pending_id, code, order_id, memo, metadata)
        VALUES (p_id, p_kind, hold.debit_account_id, hold.credit_account_id, expected.amount_minor,
                hold.currency, p_pending_id, hold.code, hold.order_id, hold.memo, hold.metadata)
        ON CONFLICT DO NOTHING
        RETURNING * INTO t;
        IF NOT FOUND THEN
            SELECT * INTO t FROM transfers WHERE id = p_id;
            IF FOUND THEN
                RETURN ledger_replay(t, expected, fields, p_entry_type);
            END IF;
            SELECT * INTO resolver FROM transfers WHERE pending_id = p_pending_id;
            RAISE EXCEPTION USING ERRCODE = 'TL005',
                MESSAGE = format('pending transfer %s was already resolved by %s (%s)',
                                 p_pending_id, resolver.id, resolver.kind),
                DETAIL = jsonb_build_object('pending_id', p_pending_id, 'resolved_by', resolver.id);
        END IF;
        PERFORM ledger_book(t, p_entry_type, hold.amount_minor);
        RETURN t;
    END $$
    """,
    # Many transfers in one statement, so one commit (and one lock of a hot wallet) serves them all:
    # the kernel sends the calls that queue up while earlier ones are in flight. Every wallet the batch
    # touches is locked first, at once and in id order, so concurrent batches never deadlock on wallets
    # (two batches with the same platform-only ids in opposite order can: PostgreSQL aborts one, 40P01,
    # and the kernel reruns it); each item runs in a block of its own, so a refusal (SQLSTATE class TL)
    # undoes only that item.
    """
    CREATE FUNCTION ledger_apply(items jsonb)
    RETURNS TABLE (item_no integer, transfer transfers, error_state text, error_message text,
                   error_detail text)
    LANGUAGE plpgsql AS $$
    DECLARE
        item jsonb;
    BEGIN
        PERFORM 1 FROM accounts a
        WHERE a.vendor_id IS NOT NULL AND a.id IN (
            SELECT (i ->> 'debit')::uuid FROM jsonb_array_elements(items) i
            UNION ALL
            SELECT (i ->> 'credit')::uuid FROM jsonb_array_elements(items) i
            UNION ALL
            SELECT unnest(ARRAY[t.debit_account_id, t.credit_account_id]) FROM transfers t
            WHERE t.id IN (SELECT i ->> 'pending_id' FROM jsonb_array_elements(items) i))
        ORDER BY a.id
        FOR NO KEY UPDATE;
        item_no := 0;
        FOR item IN SELECT value FROM jsonb_array_elements(items) LOOP
            item_no := item_no + 1;
            error_state := NULL;
            error_message := NULL;
            error_detail := NULL;
            BEGIN
                IF item ? 'pending_id' THEN
                    transfer := ledger_resolve_pending(
                        item ->> 'id', item ->> 'pending_id', item ->> 'kind', (item ->> 'amount')::bigint,
                        item ->> 'entry_type');
                ELSE
                    transfer := ledger_create_transfer(
                        item ->> 'id', item ->> 'kind', (item ->> 'debit')::uuid, (item ->> 'credit')::uuid,
                        (item ->> 'amount')::bigint, item ->> 'currency', item ->> 'code',
                        (item ->> 'order_id')::uuid, item ->> 'memo', item -> 'metadata',
                        (item ->> 'timeout_at')::timestamptz, item ->> 'entry_type');
                END IF;
            EXCEPTION WHEN SQLSTATE 'TL001' OR SQLSTATE 'TL002' OR SQLSTATE 'TL003' OR SQLSTATE 'TL004'
                           OR SQLSTATE 'TL005' OR SQLSTATE 'TL006' THEN
                GET STACKED DIAGNOSTICS error_state = RETURNED_SQLSTATE, error_message = MESSAGE_TEXT,
                                        error_detail = PG_EXCEPTION_DETAIL;
                transfer := NULL;
            END;
            RETURN NEXT;
        END LOOP;
    END $$
    """,
]

_DROP = [
    "DROP FUNCTION ledger_apply(jsonb)",
    "DROP FUNCTION ledger_resolve_pending(text, text, text, bigint, text)",
    "DROP FUNCTION ledger_create_transfer(text, text, uuid, uuid, bigint, text, text, uuid, text, jsonb, "
    "timestamptz, text)",
    "DROP FUNCTION ledger_book(transfers, text, bigint)",
    "DROP FUNCTION ledger_replay(transfers, transfers, text[], text)",
    "DROP VIEW account_totals",
    "DROP VIEW ledger_movements",
]


def upgrade() -> None:
    op.execute(_MOVEMENTS)
    op.execute(_TOTALS)
    for function in _FUNCTIONS:
        op.execute(function)
    # From now on a platform account's totals are its transfers'; the cached columns stay at zero.
    op.execute(
        "UPDATE accounts SET debits_posted_minor = 0, credits_posted_minor = 0, "
        "debits_pending_minor = 0, credits_pending_minor = 0 WHERE vendor_id IS NULL"
    )
    op.create_check_constraint(op.f("ck_accounts_no_platform_totals"), "accounts", _NO_PLATFORM_TOTALS)


def downgrade() -> None:
    op.drop_constraint(op.f("ck_accounts_no_platform_totals"), "accounts", type_="check")
    # The kernel before this revision keeps platform totals cached: give them their derived values back.
    op.execute(
        """
        UPDATE accounts a SET debits_posted_minor = t.debits_posted_minor,
            credits_posted_minor = t.credits_posted_minor, debits_pending_minor = t.debits_pending_minor,
            credits_pending_minor = t.credits_pending_minor
        FROM account_totals t WHERE t.account_id = a.id AND a.vendor_id IS NULL
        """
    )
    for statement in _DROP:
        op.execute(statement)
