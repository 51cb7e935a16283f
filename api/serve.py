"""`python -m api.serve`: the API under uvicorn, configured from the settings (the dev stack, the Docker
image and docker-compose all start it this way, so the server's limits are the same everywhere).

h11 is chosen explicitly: its request-head limit is the one uvicorn makes configurable. Idle keep-alive
connections are dropped after HTTP_KEEP_ALIVE_SECONDS; the body's size and read deadline are enforced in
the app (api.request_limits), which sees the body as it streams. Forwarded headers are believed only from
TRUSTED_PROXIES.
"""

from __future__ import annotations

import uvicorn

from ttelgo.settings import Settings, get_settings


def server_config(settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        "api.app:create_app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        http="h11",
        h11_max_incomplete_event_size=settings.http_max_header_bytes,
        timeout_keep_alive=settings.http_keep_alive_seconds,
        server_header=False,
        proxy_headers=True,
        forwarded_allow_ips=settings.trusted_proxies,
    )


def main() -> None:
    uvicorn.Server(server_config(get_settings())).run()


if __name__ == "__main__":
    main()
