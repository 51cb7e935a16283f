"""The interactive docs work without internet (issue 12): /docs and /redoc reference this origin only, every
asset they name is served by the app, and their Content-Security-Policy names no other host but still lets
the page's own inline start-up script run."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from api.app import create_app
from tests.conftest import make_settings
from ttelgo.sandbox.processes import free_port

ORIGIN = "http://docs.test"
PAGES = ("/docs", "/redoc")
URL_ATTRIBUTES = {"src", "href", "spec-url"}  # spec-url: where ReDoc reads the OpenAPI document
CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")]+)")
ANY_ABSOLUTE_URL = re.compile(r"[a-z][a-z0-9+.-]*://|(?<![:/])//[a-z0-9]", re.IGNORECASE)
CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
# Sources a docs policy may name: keywords, hashes, and the data:/blob: schemes, which are no host.
LOCAL_SOURCE = re.compile(r"^('self'|'none'|'unsafe-inline'|'sha256-[A-Za-z0-9+/]+={0,2}'|data:|blob:)$")


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.urls += [value for name, value in attrs if name in URL_ATTRIBUTES and value]
        self.urls += CSS_URL.findall(values.get("style") or "")
        self._in_inline_script = tag == "script" and "src" not in values
        if self._in_inline_script:
            self.inline_scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_inline_script = False

    def handle_data(self, data: str) -> None:
        if self._in_inline_script:
            self.inline_scripts[-1] += data
        self.urls += CSS_URL.findall(data)  # <style> blocks


def _parsed(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def _same_origin(url: str, base: str) -> bool:
    if urlsplit(url).scheme == "data":
        return True
    absolute = urlsplit(urljoin(base, url))
    return f"{absolute.scheme}://{absolute.netloc}" == ORIGIN


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(database_url=database_url, temporal_address=f"127.0.0.1:{free_port()}")
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url=ORIGIN) as c:
        yield c


@pytest.mark.parametrize("path", PAGES)
async def test_docs_page_and_its_assets_come_from_this_origin(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert not ANY_ABSOLUTE_URL.search(response.text), "the page spells out a URL of another host"
    page = _parsed(response.text)
    page_url = f"{ORIGIN}{path}"
    assert page.urls, "the page references its assets"
    foreign = [url for url in page.urls if not _same_origin(url, page_url)]
    assert foreign == [], f"{path} references other hosts: {foreign}"

    assets = {urljoin(page_url, url) for url in page.urls if urlsplit(url).scheme != "data"}
    assert any(url.endswith(".js") for url in assets), "the page loads its UI script from this origin"
    for url in sorted(assets):
        asset = await client.get(url)
        assert asset.status_code == 200, url
        content_type = asset.headers["content-type"]
        if url.endswith("/openapi.json"):
            assert content_type == "application/json"
            continue
        expected = next(kind for suffix, kind in CONTENT_TYPES.items() if urlsplit(url).path.endswith(suffix))
        assert expected in content_type, f"{url}: {content_type}"
        if content_type.startswith("text/css"):  # what a stylesheet pulls in (fonts, images) stays local
            css_foreign = [ref for ref in CSS_URL.findall(asset.text) if not _same_origin(ref, url)]
            assert css_foreign == [], f"{url} references other hosts: {css_foreign[:5]}"


@pytest.mark.parametrize("path", PAGES)
async def test_docs_policy_names_no_other_host_and_allows_the_page_scripts(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    policy = response.headers["Content-Security-Policy"]
    directives = dict(
        (name, sources) for name, *sources in (part.split() for part in policy.split(";") if part.strip())
    )
    foreign = {
        name: [s for s in sources if not LOCAL_SOURCE.match(s)] for name, sources in directives.items()
    }
    assert all(not sources for sources in foreign.values()), f"{path} policy names hosts: {foreign}"
    assert directives["default-src"] == ["'none'"]
    assert "'unsafe-inline'" not in directives["script-src"] and "'self'" in directives["script-src"]
    for script in _parsed(response.text).inline_scripts:  # the browser hashes the script's exact text
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in directives["script-src"], f"{path}: an inline script would be blocked"
