"""Where a webhook may be sent. With `public_only` (production): https, and every address the host
resolves to is public (no loopback, private, link-local, CGNAT, multicast, reserved or cloud metadata
address). Checked when the URL is set and again before every attempt (DNS can change in between)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


class UnsafeWebhookUrl(ValueError):
    """A URL webhooks must not be sent to."""


def check_url(url: str, *, public_only: bool) -> str:
    """Checks the URL's shape (and a literal address); returns its host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeWebhookUrl("the webhook URL must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise UnsafeWebhookUrl("the webhook URL must not carry credentials")
    if public_only:
        if parts.scheme != "https":
            raise UnsafeWebhookUrl("the webhook URL must use https")
        try:
            literal = ipaddress.ip_address(parts.hostname)
        except ValueError:
            literal = None
        if literal is not None:
            _check_address(literal)
        elif parts.hostname.lower() == "localhost" or parts.hostname.lower().endswith(".localhost"):
            raise UnsafeWebhookUrl("the webhook URL must not point at this machine")
    return parts.hostname


def _check_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address in METADATA or not address.is_global or address.is_multicast:
        raise UnsafeWebhookUrl(f"the webhook URL resolves to a non-public address ({address})")


async def check_url_resolves(url: str, *, public_only: bool) -> None:
    """`check_url`, then (with `public_only`) every address the host resolves to must be public."""
    host = check_url(url, public_only=public_only)
    if not public_only:
        return
    port = urlsplit(url).port or 443
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeWebhookUrl(f"the webhook host {host} does not resolve") from exc
    if not infos:
        raise UnsafeWebhookUrl(f"the webhook host {host} does not resolve")
    for info in infos:
        _check_address(ipaddress.ip_address(info[4][0].split("%")[0]))
