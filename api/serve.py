"""`python -m api.serve`: the API under uvicorn, configured from the settings (the dev stack, the Docker
image and docker-compose all start it this way, so the server's limits are the same everywhere).

h11 is chosen explicitly: its request-head limit is the one uvicorn makes configurable (httptools would be
faster, but has no such limit in uvicorn). The event loop is uvloop: socket writes are most of what a
request costs here (the API's own, and asyncpg's), and uvloop makes each cheaper. Idle keep-alive
connections are dropped after HTTP_KEEP_ALIVE_SECONDS; the body's size and read deadline are enforced in
the app (api.request_limits), which sees the body as it streams. Forwarded headers are believed only from
TRUSTED_PROXIES.
"""

from __future__ import annotations

import logging

import uvicorn

from ttelgo.settings import ConfigurationError, Settings, get_settings


def uvicorn_log_level(log_level: str) -> int:
    """LOG_LEVEL as the number uvicorn accepts: any name Python's logging knows (WARN, FATAL, NOTSET as
    well as uvicorn's own lower-case names), which is what the app's logging accepts too."""
    level = logging.getLevelNamesMapping().get(log_level.strip().upper())
    if level is None:
        raise ConfigurationError(f"LOG_LEVEL={log_level!r} is not a logging level such as INFO or WARNING")
    return level


def server_config(settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        "api.app:create_app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        http="h11",
        loop="uvloop",
        h11_max_incomplete_event_size=settings.http_max_header_bytes,
        timeout_keep_alive=settings.http_keep_alive_seconds,
        server_header=False,
        # uvicorn's access lines are INFO: off under LOG_LEVEL=WARNING.
        log_level=uvicorn_log_level(settings.log_level),
        proxy_headers=True,
        forwarded_allow_ips=settings.trusted_proxies,
    )


def main() -> None:
    uvicorn.Server(server_config(get_settings())).run()


if __name__ == "__main__":
    main()
