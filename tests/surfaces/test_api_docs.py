"""The REST service's interactive docs work offline: /docs (Swagger UI) and /redoc load their
scripts and styles from files shipped with the package, checked in a real Chromium that may
reach nothing but the service on 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from .test_api import serving

CHROMIUM = "/usr/bin/chromium"


def test_the_docs_pages_reference_only_the_service_itself(tmp_path) -> None:
    with serving(tmp_path) as url:
        for page in ("/docs", "/redoc"):
            html = httpx.get(url + page).text
            assert "http://" not in html and "https://" not in html, page  # no CDN, no web fonts
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon-32x32.png"):
            answer = httpx.get(f"{url}/static/{asset}")
            assert answer.status_code == 200 and len(answer.content) > 500, asset


@pytest.mark.slow  # a browser
@pytest.mark.skipif(not os.environ.get("CI") and not Path(CHROMIUM).exists(),
                    reason="needs chromium (scripts/setup.sh installs it); in CI a missing browser is a failure")
def test_docs_render_the_operations_in_chromium_with_no_network(tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    with serving(tmp_path) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page()
        elsewhere: list[str] = []

        def only_here(route) -> None:  # noqa: ANN001 - playwright's Route
            if urlparse(route.request.url).hostname == "127.0.0.1" or route.request.url.startswith("data:"):
                route.continue_()
            else:
                elsewhere.append(route.request.url)
                route.abort()

        page.route("**/*", only_here)
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(f"{url}/docs")
        page.wait_for_selector(".opblock-summary-path", timeout=30_000)
        assert "voicelab" in page.inner_text(".info .title")
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/api/conversation/start" in [p.replace("\u200b", "") for p in paths]
        page.goto(f"{url}/redoc")
        page.wait_for_selector("h2:has-text('Place a call to the chargeback agent')", timeout=30_000)
        assert "voicelab" in page.inner_text("h1")
        browser.close()
    assert elsewhere == []
    assert all("logo-mini" in p for p in problems), problems  # ReDoc's vendor logo, refused by the page's policy
