"""App factory: the eSIM Go API under /v2.4 behind the guard middleware, plus the /_sim admin API."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import admin, api
from .config import SimConfig
from .errors import ApiError, error_response
from .guard import API_PREFIX, ApiGuard
from .runtime import Simulator

ADMIN_PREFIX = "/_sim"


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return "Request body is not valid JSON"
        loc = ".".join(str(p) for p in err.get("loc", ())[1:]) or "request"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "Bad Request"


def create_app(config: SimConfig | None = None) -> FastAPI:
    sim = Simulator(config or SimConfig())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await sim.shutdown()

    app = FastAPI(
        title="eSIM Go simulator",
        version="2.4",
        lifespan=lifespan,
        docs_url=f"{ADMIN_PREFIX}/docs",
        redoc_url=None,
        openapi_url=f"{ADMIN_PREFIX}/openapi.json",
    )
    app.state.sim = sim
    app.include_router(api.router, prefix=API_PREFIX)
    app.include_router(admin.router, prefix=ADMIN_PREFIX)
    app.add_middleware(ApiGuard, sim=sim, router=api.router)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # eSIM Go answers malformed requests with 400 {"message": ...}; the admin API keeps FastAPI's 422.
        status = 422 if request.url.path.startswith(ADMIN_PREFIX) else 400
        return error_response(status, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    return app
