"""The live farm page (/ui) in a real headless Chromium, against the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_events_wire import EventsGateway

from browser import CHROMIUM, FLAGS, needs_chromium

pytestmark = needs_chromium("the live page")


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[EventsGateway]:
    """The events gateway on a frozen farm: the page's changes come from the test."""
    running = EventsGateway(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def _open(playwright: object, base: str, token: str) -> tuple[object, object, list[str]]:
    browser = playwright.chromium.launch(  # type: ignore[attr-defined]
        executable_path=CHROMIUM, headless=True, args=FLAGS
    )
    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("dialog", lambda dialog: dialog.accept())
    page.on("pageerror", lambda error: requested.append(f"page error: {error}"))
    page.goto(f"{base}/ui")
    page.fill("#token", token)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#jobs tr.job", timeout=20_000)
    return browser, page, requested


def test_page_shows_jobs_and_a_frame_changes_live(gateway: EventsGateway) -> None:
    """The demo's jobs appear; a frame eaten through the API changes state on screen."""
    from playwright import sync_api

    client = gateway.client()
    job = next(
        j
        for j in client.jobs("testing")
        if j["state"] == "PENDING" and j["jobStats"]["waitingFrames"]
    )
    frame = next(f for f in client.frames(job["id"]) if f["state"] == "WAITING")
    with sync_api.sync_playwright() as playwright:
        browser, page, requested = _open(playwright, gateway.url, gateway.admin)
        try:
            names = page.locator("#jobs tr.job td.name").all_inner_texts()
            assert job["name"] in names
            page.locator(f'#jobs tr.job[data-id="{job["id"]}"]').click()
            cell = page.locator(f'#frames tr.frame[data-id="{frame["id"]}"] td.state')
            cell.wait_for(timeout=15_000)
            assert cell.inner_text() == "WAITING"
            page.evaluate("window.__marker = 1")
            client.eat_frame(frame["id"])
            page.wait_for_function(
                "id => document.querySelector(`#frames tr.frame[data-id='${id}'] td.state`)"
                "?.textContent === 'EATEN'",
                arg=frame["id"],
                timeout=15_000,
            )
            assert page.evaluate("window.__marker") == 1  # the same page: no reload
        finally:
            browser.close()  # type: ignore[attr-defined]
    assert requested and all(url.startswith(gateway.url) for url in requested), requested


def test_kill_button_for_admin_and_none_for_viewer(gateway: EventsGateway) -> None:
    """An admin's kill button kills the job (seen live); a viewer has no such button."""
    from playwright import sync_api

    client = gateway.client()
    job = next(j for j in client.jobs("testing") if j["state"] == "PENDING")
    with sync_api.sync_playwright() as playwright:
        browser, page, _ = _open(playwright, gateway.url, gateway.viewer)
        try:
            assert page.locator("#jobs tr.job").count() > 0
            assert page.locator("#jobs button.kill").count() == 0
            assert page.locator("#jobs button.pause").count() == 0
        finally:
            browser.close()  # type: ignore[attr-defined]

        browser, page, _ = _open(playwright, gateway.url, gateway.admin)
        try:
            row = page.locator(f'#jobs tr.job[data-id="{job["id"]}"]')
            row.locator("button.kill").click()
            page.wait_for_function(
                "id => document.querySelector(`#jobs tr.job[data-id='${id}'] td.state`)"
                "?.textContent === 'FINISHED'",
                arg=job["id"],
                timeout=15_000,
            )
        finally:
            browser.close()  # type: ignore[attr-defined]
    assert client.job(job["id"])["state"] == "FINISHED"
