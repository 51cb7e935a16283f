"""localstripe (the Stripe stand-in) on loopback only, keeping its state in memory.

Its own CLI listens on every interface and pickles its store to /tmp after each request; here it binds
127.0.0.1, the pickle is switched off, and two gaps to real Stripe are closed so a card flow can be
tried end to end: `confirm` takes a `payment_method` (as Stripe.js sends it), and a PaymentIntent whose
card was declined can be confirmed again with another card. With `--webhook-url`, events are sent there,
signed with STRIPE_WEBHOOK_SECRET, from the first request on (and again after a restart).

Run: python -m ttelgo.sandbox.localstripe_server [--port 8420] [--webhook-url URL]
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any


def _patch_confirm(resources: Any) -> None:
    original_bound = resources.PaymentIntent._api_confirm
    original = original_bound.__func__

    def confirm(cls: Any, id: str, payment_method: str | None = None, **kwargs: Any) -> Any:
        if payment_method is not None:
            intent = cls._api_retrieve(id)
            resources.PaymentMethod._api_retrieve(payment_method)  # 404 for an unknown method
            if intent.latest_charge is not None and intent.latest_charge.status == "failed":
                intent.latest_charge = None  # declined before: a new attempt, as on Stripe
            intent.payment_method = payment_method
        return original(cls, id, **kwargs)

    resources.PaymentIntent._api_confirm = classmethod(confirm)
    # The server builds its routes from this table when imported, so the patch must be in it first.
    resources.extra_apis[:] = [
        (method, url, resources.PaymentIntent._api_confirm if func == original_bound else func)
        for method, url, func in resources.extra_apis
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--webhook-url", help="where to send events (secret: STRIPE_WEBHOOK_SECRET)")
    args = parser.parse_args()

    from aiohttp import web
    from localstripe import resources

    resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
    _patch_confirm(resources)
    from localstripe.server import app
    from localstripe.webhooks import register_webhook

    if args.webhook_url:
        register_webhook("ttelgo", args.webhook_url, os.environ["STRIPE_WEBHOOK_SECRET"], None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    web.run_app(app, host=args.host, port=args.port, print=lambda *_: None)


if __name__ == "__main__":
    main()
