"""The /docs API browser in a real headless Chromium, against the demo daemon."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_process import Gateway

from browser import CHROMIUM, FLAGS, needs_chromium

pytestmark = needs_chromium("the docs page")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """twistd --demo on a loopback port: its base URL and its demo token."""
    token_file = tmp_path / "token"
    daemon = Gateway(["--demo", "--demo-token-file", str(token_file)], {}, tmp_path)
    try:
        yield f"http://127.0.0.1:{daemon.port}", token_file.read_text().strip()
    finally:
        daemon.stop()


def test_docs_page_lists_interfaces_and_tries_a_call(demo: tuple[str, str]) -> None:
    """The page loads with no outside requests, lists the interfaces, and GetShows runs."""
    from playwright import sync_api

    base, bearer = demo
    requested: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{base}/docs")
            page.wait_for_selector("h3.opblock-tag", timeout=20_000)
            tags = page.locator("h3.opblock-tag").all_inner_texts()
            for interface in ("show.ShowInterface", "job.JobInterface", "v1 jobs"):
                assert any(interface in tag for tag in tags), tags

            page.click("button.authorize")
            page.fill(".auth-container input", bearer)
            page.click(".auth-btn-wrapper button.authorize")
            page.click(".auth-btn-wrapper button.btn-done")

            page.locator("h3.opblock-tag", has_text="show.ShowInterface").first.click()
            page.locator(".opblock-summary-path", has_text="/show.ShowInterface/GetShows").click()
            page.click("button.try-out__btn")
            page.click("button.execute")
            status = page.locator(".live-responses-table .response .response-col_status").first
            status.wait_for(timeout=15_000)
            assert status.inner_text().strip().startswith("200")
            body = page.locator(".live-responses-table .response-col_description pre").first
            assert '"testing"' in body.inner_text()
        finally:
            browser.close()
    assert requested and all(url.startswith(base) for url in requested), requested
    assert f"{base}/openapi.json" in requested
