"""The console in a real browser: Debian's headless Chromium driven by ChromeDriver (both from apt, never
downloaded: .ci/run installs them). It loads the timeline, sees a version published during the test
appear without a reload, opens a diff between two versions and finds the changed cluster, and searches
the objects for a rejected Ingress and its reason. Screenshots of each page land in the test's
temporary directory. A second test rolls a real Envoy's traffic back from the console and unpins it."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from tests.builder.support import cluster
from tests.console.support import console_stack
from xdsbus.bus import Bus
from xdsbus.ledger import reader
from xdsbus_dev.harness.processes import Service, free_port, tool, wait_for_port
from xdsbus_dev.harness.stack import HOST, Stack, ingress_manifest

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Flags that let Chromium run headless in a container as root, without reaching out anywhere.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)
# The bar for a new version to show on an open timeline.
LIVE_WITHIN = 2.0

T = TypeVar("T")


def _browser_or_skip() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if not missing:
        return
    message = f"{', '.join(missing)} missing (apt-get install chromium chromium-driver; pip install selenium)"
    # CI installs them (.ci/run): there, their absence is a failure, not a reason to skip.
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Any]:
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    service = DriverService(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    browser = webdriver.Chrome(options=options, service=service)
    try:
        yield browser
    finally:
        browser.quit()


class Page:
    """The browser, driven from a thread so the event loop (and the in-process builder) keeps going."""

    def __init__(self, driver: Any, shots: Path) -> None:
        self.driver = driver
        self.shots = shots

    async def call(self, action: Callable[[], T]) -> T:
        return await asyncio.to_thread(action)

    async def open(self, url: str) -> None:
        await self.call(lambda: self.driver.get(url))

    async def wait_for(self, css: str, text: str = "", timeout: float = 10.0, click: bool = False) -> str:
        """The text of the first element matching `css` and containing `text` (clicked if `click`),
        polled until `timeout`. The live timeline redraws itself: an element gone stale is looked up
        again."""
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By

        def find() -> str | None:
            try:
                for found in self.driver.find_elements(By.CSS_SELECTOR, css):
                    content = str(found.text)
                    if text in content:
                        if click:
                            found.click()
                        return content
            except StaleElementReferenceException:
                pass
            return None

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = await self.call(find)
            if found is not None:
                return found
            await asyncio.sleep(0.05)
        await self.screenshot("timed-out")
        raise AssertionError(
            f"no {css!r} with {text!r} after {timeout}s; page: {await self.call(self._text)}"
        )

    def _text(self) -> str:
        from selenium.webdriver.common.by import By

        return str(self.driver.find_element(By.TAG_NAME, "body").text)[:2000]

    async def click(self, css: str, text: str = "") -> None:
        await self.wait_for(css, text, click=True)

    async def type(self, css: str, value: str) -> None:
        from selenium.webdriver.common.by import By

        await self.wait_for(css)
        await self.call(lambda: self.driver.find_element(By.CSS_SELECTOR, css).send_keys(value))

    async def screenshot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        await self.call(lambda: self.driver.save_screenshot(str(path)))
        return path


@pytest.mark.asyncio
async def test_timeline_live_diff_and_a_rejected_object_in_chromium(tmp_path: Path, driver: Any) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    page = Page(driver, shots)
    async with console_stack(tmp_path / "stack") as stack:
        head = (await stack.get("/api/scopes/default/versions"))["head"]
        await page.open(f"{stack.url}/#/timeline")
        await page.wait_for(f'#timeline-table tr[data-version="{head}"]')
        await page.wait_for("#live", "live")

        # A version published now shows on the open page, without a reload.
        before = await stack.change_endpoints()
        published = time.monotonic()
        await page.wait_for(f'#timeline-table tr[data-version="{before}"]', timeout=10)
        shown_after = time.monotonic() - published
        assert shown_after < LIVE_WITHIN, f"version {before} showed after {shown_after:.1f}s"
        after = await stack.change_cluster()
        await page.wait_for(f'#timeline-table tr[data-version="{after}"]', timeout=10)
        await page.screenshot("timeline")

        # Pick A and B on the timeline's rows and open their diff: the new cluster, as Envoy JSON.
        await page.click(f'#timeline-table tr[data-version="{before}"] button.pick-a')
        await page.click(f'#timeline-table tr[data-version="{after}"] button.pick-b')
        await page.click("#diff-go")
        await page.wait_for("#diff-title", f"{before} → {after}")
        text = await page.wait_for(f'.resource.changed[data-name="{cluster("shop")}"]')
        assert f"~ Cluster {cluster('shop')}" in text and "http2_protocol_options" in text
        await page.screenshot("diff")

        # The version view lists what changed.
        await page.open(f"{stack.url}/#/version/{before}")
        await page.wait_for("#changed-table", cluster("shop"))
        await page.screenshot("version")

        # Searching the objects finds the rejected Ingress and says why.
        await page.open(f"{stack.url}/#/objects")
        await page.type("#object-search", "too-greedy")
        await page.wait_for("#object-count", "1 object")
        row = await page.wait_for('#objects-table tr[data-object="Ingress/default/too-greedy"]', "rejected")
        assert "program size" in row
        await page.screenshot("objects")
        # The object links to its events and the versions they went into.
        await page.click('#objects-table tr[data-object="Ingress/default/too-greedy"] a')
        await page.wait_for("#history-table", "upsert")
        await page.screenshot("history")

        await page.open(f"{stack.url}/#/sources")
        await page.wait_for('#leases-table tr[data-lease="builder.default"]', "in-process")
        await page.wait_for('#watchers-table tr[data-source="test/console"]', "publishing")
        await page.screenshot("sources")
        await page.open(f"{stack.url}/#/proxies")
        await page.wait_for("h2", "Proxies")
        await page.screenshot("proxies")


@pytest.mark.asyncio
async def test_a_rollback_from_the_console_moves_envoy_traffic(tmp_path: Path, driver: Any) -> None:
    """With --allow-rollback, the operator's NATS user and a token: the timeline offers a rollback on
    each version; it pins the scope (banner, marked versions) and a real Envoy's traffic follows, then
    Unpin brings the head back."""
    shots = tmp_path / "screenshots"
    shots.mkdir()
    page = Page(driver, shots)
    tokens = tmp_path / "operator-tokens"
    tokens.write_text(f"ana:{TOKEN}\n")
    async with Stack(tmp_path / "stack", edges=1, nats_users=True) as stack, stack.bus() as bus:
        await stack.wait_for_pod("/a", "echo-a-")
        good = await _head(bus)
        stack.write("ingress.yaml", [ingress_manifest("demo", HOST, [("/a", "echo-b"), ("/", "echo-b")])])
        await stack.wait_for_pod("/a", "echo-b-")
        port = free_port()
        console = Service(
            [
                tool("xdsbus-console"),
                "--nats-url",
                stack.nats.url,
                "--listen",
                f"127.0.0.1:{port}",
                "--http-listen",
                "off",
                "--allow-rollback",
                "--operator-tokens-file",
                str(tokens),
            ],
            tmp_path / "console.log",
            env=stack.nats.client_env("operator"),
        ).start()
        try:
            url = f"http://127.0.0.1:{port}"
            wait_for_port(port, timeout=20)
            # The token is checked before anything is published.
            assert await _post(f"{url}/api/scopes/default/rollback", {"version": good}, "") == 401
            assert await _post(f"{url}/api/scopes/default/rollback", {"version": good}, "x" * 20) == 401

            await page.open(f"{url}/#/timeline")
            await page.type("#operator-token", TOKEN)
            await page.click(f'#timeline-table tr[data-version="{good}"] button.rollback')
            await page.click("#rollback-confirm")
            await page.wait_for("#rollback-result", "accepted", timeout=15)
            banner = await page.wait_for("#pin-banner", f"Pinned to version {good}")
            assert "by ana (operator/console" in banner
            await stack.wait_for_pod("/a", "echo-a-")
            pinned = await _head(bus)
            await page.wait_for(f'#timeline-table tr[data-version="{pinned}"] .badge.pin', f"pinned → {good}")
            await page.screenshot("rollback")

            await page.click("#unpin")
            await page.wait_for("#rollback-result", "released by ana", timeout=15)
            await stack.wait_for_pod("/a", "echo-b-")
            released = await _head(bus)
            await page.wait_for(f'#timeline-table tr[data-version="{released}"] .badge.pin', "unpinned")
            await page.screenshot("unpinned")
        finally:
            console.terminate()


TOKEN = "op-token-0123456789abcdef"


async def _head(bus: Bus) -> int:
    head = await reader.head(bus, "default")
    assert head is not None
    return int(head.record.version)


async def _post(url: str, body: dict[str, Any], token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers) as response:
        return response.status
