"""The console in a real browser: Debian's headless Chromium driven by ChromeDriver (both from apt, never
downloaded: .ci/run installs them). It loads the timeline, sees a version published during the test
appear without a reload, opens a diff between two versions and finds the changed cluster, and searches
the objects for a rejected Ingress and its reason. Screenshots of each page land in the test's
temporary directory."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.builder.support import cluster
from tests.console.support import console_stack

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
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
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
        await page.screenshot("sources")
        await page.open(f"{stack.url}/#/proxies")
        await page.wait_for("h2", "Proxies")
        await page.screenshot("proxies")
