"""The API plus one bare endpoint returning a fixed JSON body, so both are measured in one server."""

from __future__ import annotations

import json
import os
from typing import Any

from fastapi import FastAPI

from api.app import create_app


def create_bench_app() -> FastAPI:
    app = create_app()
    with open(os.environ["BENCH_BARE_BODY"]) as f:
        body = json.load(f)

    @app.get("/bench/bare")
    async def bare() -> dict[str, Any]:
        return body

    return app
