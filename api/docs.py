"""The interactive docs, /docs (Swagger UI) and /redoc (ReDoc), working without internet: their scripts and
styles come from the fastapi-offline package and are served by the app itself, never from a CDN.

Each page states its own Content-Security-Policy (api.security_headers.docs_csp): Swagger UI starts from an
inline script, which the policy allows by its hash, so no other inline script can run.
"""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from api.security_headers import docs_csp

SWAGGER_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs/assets"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def install_docs(app: FastAPI) -> None:
    assert app.openapi_url, "the docs pages read the OpenAPI document"
    openapi_url = app.openapi_url
    app.mount(ASSETS_URL, StaticFiles(packages=[("fastapi_offline", "static")]), name="docs-assets")

    @app.get(SWAGGER_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        return _with_policy(
            get_swagger_ui_html(
                openapi_url=root + openapi_url,
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                swagger_ui_parameters=app.swagger_ui_parameters,
            )
        )

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        return _with_policy(
            get_redoc_html(
                openapi_url=root + openapi_url,
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
                with_google_fonts=False,
            )
        )


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _with_policy(page: HTMLResponse) -> HTMLResponse:
    """The page's CSP, allowing exactly the inline scripts it carries (hashed as the browser will)."""
    body = bytes(page.body).decode()
    hashes = [hashlib.sha256(script.encode()).digest() for script in _INLINE_SCRIPT.findall(body)]
    page.headers["Content-Security-Policy"] = docs_csp(base64.b64encode(h).decode() for h in hashes)
    return page
