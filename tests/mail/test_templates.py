"""Every template rendered and sent through the real local SMTP server (aiosmtpd writing .eml files)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from tests.conftest import make_settings
from ttelgo.mail.render import TEMPLATES, TemplateProblem, message_id, render
from ttelgo.mail.smtp import SmtpMailer
from ttelgo.qr import lpa
from ttelgo.sandbox import smtp_server
from ttelgo.sandbox.processes import free_port

SMDP = "rsp.example.net"
ORDER = {"order_id": str(uuid.uuid4()), "bundle_code": "esim_1GB_7D_FR_V2", "quantity": 2}
PAYLOADS: dict[str, dict[str, object]] = {
    "esims_ready": {
        **ORDER,
        "esims": [
            {"iccid": "8944000010000000011", "lpa": lpa(SMDP, "MATCH-ONE")},
            {"iccid": "8944000010000000029", "smdp_address": SMDP, "matching_id": "MATCH-TWO"},
        ],
    },
    "payment_receipt": {**ORDER, "total_minor": 1398, "currency": "USD", "payment_intent_id": "pi_123"},
    "payment_failed": {**ORDER, "total_minor": 1398, "currency": "USD", "reason": "card declined"},
    "order_closed": {**ORDER, "total_minor": 1398, "currency": "USD", "closed": "canceled", "why": "asked"},
    "refund_succeeded": {**ORDER, "amount_minor": 699, "currency": "USD", "refund_id": "r-1"},
    "order_refunded": {**ORDER, "total_minor": 1398, "currency": "USD"},
    "topup_receipt": {
        "topup_id": "t-1",
        "vendor_name": "Roam & Co <b>",
        "amount_minor": 50_000,
        "available_minor": 75_000,
        "currency": "EUR",
    },
    "low_balance": {
        "vendor_name": "Roam",
        "available_minor": 900,
        "threshold_minor": 5_000,
        "currency": "EUR",
    },
    "invoice_issued": {
        "vendor_name": "Roam & Co <b>",
        "number": "INV-2026-000007",
        "period": "2026-10",
        "issued": "2026-11-01",
        "due": "2026-12-01",
        "debits_minor": 2_100,
        "refunds_minor": 700,
        "total_minor": 1_400,
        "currency": "USD",
        "lines": [
            {"bundle_code": "esim_1GB_7D_FR_V2", "quantity": 3, "amount_minor": 1_400},
            {"bundle_code": "<script>", "quantity": 0, "amount_minor": 0},
        ],
    },
    "esim_usage": {
        **ORDER,
        "iccid": "8944000010000000011",
        "bundle_name": "esim_1GB_7D_FR_V2",
        "data_used_percent": 85.0,
        "data_remaining_mb": 150,
        "data_total_mb": 1000,
    },
    "esim_expiring": {
        **ORDER,
        "iccid": "8944000010000000011",
        "bundle_name": "esim_1GB_7D_FR_V2",
        "expires_at": "2026-12-05T10:00:00+00:00",
    },
    "password_reset": {
        "token": "ttp_abc",
        "link": "Or open https://app.example/reset?token=ttp_abc",
        "minutes": 30,
    },
}
SUBJECTS = {
    "esims_ready": "is ready",
    "payment_receipt": "Payment received",
    "payment_failed": "did not go through",
    "order_closed": "was canceled",
    "refund_succeeded": "Refund of 6.99 USD",
    "order_refunded": "was refunded",
    "topup_receipt": "500.00 EUR",
    "low_balance": "balance is low",
    "password_reset": "Reset your TTelGo password",
    "esim_usage": "used 85.0 % of its data",
    "esim_expiring": "expires tomorrow",
    "invoice_issued": "invoice INV-2026-000007 for 2026-10: 14.00 USD due 2026-12-01",
}


@pytest.fixture(scope="module")
def smtp(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    port, folder = free_port(), tmp_path_factory.mktemp("mail")
    with smtp_server.running(folder, port):
        yield port, folder


def test_every_template_has_a_sample() -> None:
    assert set(PAYLOADS) == set(TEMPLATES)


@pytest.mark.parametrize("template", TEMPLATES)
async def test_template_is_rendered_and_sent_through_smtp(template: str, smtp: tuple[int, Path]) -> None:
    port, folder = smtp
    before = set(smtp_server.messages(folder))
    settings = make_settings(smtp_port=port).resolved()
    mailer = SmtpMailer(settings)
    to = f"{template}@example.com"
    note = uuid.uuid4()
    await mailer.send(
        render(template, PAYLOADS[template], to=to, mail_from=mailer.mail_from, notification_id=note)
    )

    (path,) = set(smtp_server.messages(folder)) - before
    message = smtp_server.read(path)
    assert message["To"] == to and message["From"] == settings.mail_from
    assert message["Message-ID"].strip() == message_id(note)
    assert SUBJECTS[template] in message["Subject"]
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert not re.search(r"\$[a-z_]+", re.sub(r"LPA:1\S+", "", text + html)), "every field filled in"
    assert "Roam & Co <b>" not in html, "values must be escaped in HTML"
    if template == "esims_ready":
        for code in ("MATCH-ONE", "MATCH-TWO"):
            assert lpa(SMDP, code) in text and lpa(SMDP, code) in html
            assert f"Activation code: {code}" in text
        assert f"SM-DP+ address: {SMDP}" in text
        images = [p for p in message.walk() if p.get_content_type() == "image/png"]
        assert len(images) == 2
        assert all(p.get_payload(decode=True).startswith(b"\x89PNG") for p in images)
        assert {p["Content-ID"] for p in images} == {"<qr-1>", "<qr-2>"}
        assert 'src="cid:qr-1"' in html
    if template == "invoice_issued":
        assert "esim_1GB_7D_FR_V2 × 3: 14.00 USD" in text, "line amounts in the invoice's currency"
        assert "<script>" not in html


def test_a_template_with_missing_fields_is_a_template_problem() -> None:
    with pytest.raises(TemplateProblem):
        render(
            "payment_receipt",
            {"order_id": "x"},
            to="a@example.com",
            mail_from="b@example.com",
            notification_id=1,
        )
    with pytest.raises(TemplateProblem):
        render("nope", {}, to="a@example.com", mail_from="b@example.com", notification_id=1)
