"""Templates → MIME messages, with the standard library only.

Each message `name` has, in `templates/`: `name.txt` (first line `Subject: …`, a blank line, then the plain
text body) and `name.html` (the HTML body), both `string.Template` files filled from the notification's
payload (`$field`). A payload list `items` is rendered item by item with `name.items.txt` / `.html` and
the results joined into `$items`. HTML gets every value escaped. The eSIM-ready message also carries each
eSIM's QR code as an inline `image/png` part (`cid:` referenced from the HTML).
"""

from __future__ import annotations

import base64
import html
from email.message import EmailMessage
from email.utils import formatdate
from importlib import resources
from string import Template
from typing import Any

from ttelgo.money import to_major
from ttelgo.qr import lpa, qr_png

TEMPLATES = (
    "esims_ready",
    "payment_receipt",
    "payment_failed",
    "order_closed",
    "refund_succeeded",
    "order_refunded",
    "topup_receipt",
    "low_balance",
    "password_reset",
    "invoice_issued",
    "esim_usage",
    "esim_expiring",
)
MESSAGE_ID_DOMAIN = "ttelgo.notifications"


class TemplateProblem(ValueError):
    """A template or its payload is wrong: sending again cannot help."""


def message_id(notification_id: object, resend: int = 0) -> str:
    """The same Message-ID on every attempt, so a duplicate after a crash is recognisable; an operator's
    resend gets its own (mail clients hide a second message with a Message-ID they have seen)."""
    suffix = f"-resend-{resend}" if resend else ""
    return f"<notification-{notification_id}{suffix}@{MESSAGE_ID_DOMAIN}>"


def _read(name: str) -> str | None:
    path = resources.files("ttelgo.mail") / "templates" / name
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _fill(text: str, values: dict[str, Any], where: str) -> str:
    try:
        return Template(text).substitute(values)
    except (KeyError, ValueError) as exc:
        raise TemplateProblem(f"{where}: missing or bad field {exc}") from exc


def _scalars(fields: dict[str, Any], currency: str, escape: bool) -> dict[str, str]:
    """Plain values (escaped for HTML), with each `x_minor` amount also formatted as `x`."""
    values: dict[str, str] = {}
    for key, value in fields.items():
        if isinstance(value, list):
            continue
        if key.endswith("_minor") and isinstance(value, int) and currency:
            values[key.removesuffix("_minor")] = _esc(format_minor(value, currency), escape)
        values[key] = _esc("" if value is None else str(value), escape)
    return values


def _context(name: str, payload: dict[str, Any], escape: bool) -> dict[str, str]:
    """Plain values (escaped for HTML), amounts formatted, and list fields rendered item by item (their
    amounts in the payload's currency)."""
    currency = str(payload.get("currency", ""))
    values = _scalars(payload, currency, escape)
    for key, value in payload.items():
        if not isinstance(value, list):
            continue
        ext = "html" if escape else "txt"
        item_template = _read(f"{name}.{key}.{ext}")
        if item_template is None:
            raise TemplateProblem(f"{name}: no item template for list field {key!r}")
        parts = []
        for index, item in enumerate(value, start=1):
            item_values = {"n": str(index), **_scalars(item, currency, escape)}
            parts.append(_fill(item_template, item_values, f"{name}.{key}.{ext}"))
        values[key] = "".join(parts)
    return values


def format_minor(amount_minor: int, currency: str) -> str:
    return f"{to_major(amount_minor, currency)} {currency.upper()}"


def _esc(value: str, escape: bool) -> str:
    return html.escape(value) if escape else value


def _esims(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The eSIM list with its LPA string and the content id of its QR image."""
    esims = []
    for index, esim in enumerate(payload.get("esims", []), start=1):
        item = dict(esim)
        if "lpa" not in item:
            item["lpa"] = lpa(item["smdp_address"], item["matching_id"])
        if "smdp_address" not in item or "matching_id" not in item:
            _, smdp, matching = item["lpa"].split("$", 2)
            item.setdefault("smdp_address", smdp)
            item.setdefault("matching_id", matching)
        item["cid"] = f"qr-{index}"
        esims.append(item)
    return esims


def render_html(template: str, payload: dict[str, Any]) -> str:
    """The HTML body of `template` alone, e.g. to store a document beside the message that carries it."""
    body = _read(f"{template}.html")
    if template not in TEMPLATES or body is None:
        raise TemplateProblem(f"unknown template {template!r}")
    return _fill(body, _context(template, payload, escape=True), f"{template}.html")


def render(
    template: str,
    payload: dict[str, Any],
    *,
    to: str,
    mail_from: str,
    notification_id: object,
) -> EmailMessage:
    """The message for one notification; raises TemplateProblem when it cannot be rendered."""
    if template not in TEMPLATES:
        raise TemplateProblem(f"unknown template {template!r}")
    text, body_html = _read(f"{template}.txt"), _read(f"{template}.html")
    if text is None or body_html is None:
        raise TemplateProblem(f"template {template!r} is incomplete")
    images: list[tuple[str, bytes]] = []
    if template == "esims_ready":
        esims = _esims(payload)
        for original, esim in zip(payload.get("esims", []), esims, strict=True):
            png = original.get("qr_png_base64")
            images.append((esim["cid"], base64.b64decode(png) if png else qr_png(esim["lpa"])))
        payload = {**payload, "esims": [{k: v for k, v in e.items() if k != "qr_png_base64"} for e in esims]}
    first, _, rest = _fill(text, _context(template, payload, escape=False), f"{template}.txt").partition("\n")
    if not first.startswith("Subject: "):
        raise TemplateProblem(f"{template}.txt must start with a Subject: line")
    message = EmailMessage()
    message["Subject"] = first.removeprefix("Subject: ").strip()
    message["From"] = mail_from
    message["To"] = to
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = message_id(notification_id, int(payload.get("resend", 0)))
    message["X-TTelGo-Template"] = template
    message.set_content(rest.lstrip("\n"))
    message.add_alternative(
        _fill(body_html, _context(template, payload, escape=True), f"{template}.html"), "html"
    )
    if images:
        html_part = message.get_payload()[1]
        for cid, png in images:
            html_part.add_related(
                png, "image", "png", cid=f"<{cid}>", filename=f"{cid}.png", disposition="inline"
            )
    return message
