"""
The calendar page in a real browser: headless Chromium, driven through
Selenium, loads the page from a real aggregate manager over loopback.

The browser runs in worker threads (Selenium blocks) while the reactor
serves the page. The time is the aggregate's L{Clock}, so where a block
must appear is known exactly. The screenshot is saved in the test's
folder, and also to the path in C{GENIAM_CALENDAR_SCREENSHOT} when set
(the README's picture is made so).
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, TypeVar

from twisted.internet import reactor
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from tests.calendar_harness import BERLIN, CalendarHarness, tomorrow_at

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # pragma: no cover - depends on the environment
    webdriver = None

T = TypeVar("T")
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver",)


def _find(names: tuple[str, ...]) -> str | None:
    return next((path for path in map(shutil.which, names) if path), None)


def _skip_reason() -> str | None:
    if webdriver is None:
        return "selenium is not installed (it is in the test extra: pip install '.[test]')"
    if _find(BROWSERS) is None or _find(DRIVERS) is None:
        return "no headless Chromium: install Debian's chromium and chromium-driver (.ci/run does)"
    return None


class CalendarBrowserTests(CalendarHarness):
    """The page as a person sees it."""

    skip = _skip_reason()
    timeout = 180

    async def browser(self) -> Any:
        """Start headless Chromium in a one-thread pool of our own; quit it at clean-up."""
        self.pool = ThreadPool(minthreads=1, maxthreads=1, name="geniam-test-browser")
        self.pool.start()
        self.addCleanup(self.pool.stop)
        options = webdriver.ChromeOptions()
        options.binary_location = _find(BROWSERS)
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"):
            options.add_argument(flag)
        service = Service(executable_path=_find(DRIVERS))
        driver = await self.in_browser(lambda: webdriver.Chrome(options=options, service=service))
        self.addCleanup(lambda: self.in_browser(driver.quit))
        return driver

    def in_browser(self, work: Callable[[], T]) -> Any:
        """Run blocking browser work in the pool; a Deferred firing with its result."""
        return deferToThreadPool(reactor, self.pool, work)

    async def test_booking_appears_moves_and_disappears(self) -> None:
        """
        A booking made through the AM API appears on its day at the right
        place, in the viewer's time zone; the free-slot form answers; after
        Delete the booking is gone.
        """
        fed = await self.start()
        driver = await self.browser()
        now = self.clock.seconds()
        start, end = tomorrow_at(now, 10), tomorrow_at(now, 12)
        running = await self.book(now, now + 2 * 3600)
        urns = await self.book(start, end)
        day = datetime.fromtimestamp(start, BERLIN).date().isoformat()
        page = f"{fed.calendar_url('am1')}?tz=Europe/Berlin&date={day}"
        await self.in_browser(lambda: driver.get(page))

        blocks = await self.in_browser(lambda: driver.find_elements(By.CSS_SELECTOR, "#timeline .track .block"))
        self.assertEqual(len(blocks), 1)
        style = await self.in_browser(lambda: blocks[0].get_attribute("style"))
        # 10:00 to 12:00 of a 24-hour day: from 41.6667 % for 8.3333 %.
        self.assertIn("left: 41.6667%", style)
        self.assertIn("width: 8.3333%", style)
        self.assertEqual(await self.in_browser(lambda: blocks[0].get_attribute("data-start")), str(int(start)))
        rows = await self.in_browser(lambda: [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#bookings tbody tr")])
        self.assertEqual(len(rows), 1)
        self.assertIn("10:00", rows[0])
        self.assertIn("12:00", rows[0])
        self.assertIn("Booked", rows[0])
        state = await self.in_browser(lambda: driver.find_element(By.ID, "now").text)
        self.assertIn("in a slot", state)
        self.assertNotIn("alice", await self.in_browser(lambda: driver.page_source))
        self.assertNotIn("exp1", await self.in_browser(lambda: driver.page_source))

        # The free-slot form, by keyboard and button as a person would.
        def ask() -> None:
            old_page = driver.find_element(By.TAG_NAME, "html")
            duration = driver.find_element(By.ID, "duration")
            duration.clear()
            duration.send_keys("36h")
            driver.find_element(By.CSS_SELECTOR, "#find button[type=submit]").click()
            # The answer is a new page: wait until the browser has left the old one.
            WebDriverWait(driver, 60).until(expected_conditions.staleness_of(old_page))

        await self.in_browser(ask)
        answer = await self.in_browser(lambda: driver.find_element(By.ID, "free-slots"))
        first = await self.in_browser(lambda: answer.find_element(By.CSS_SELECTOR, "li"))
        # No gap before the booking lasts 36 hours: the first slot starts as it ends.
        self.assertEqual(await self.in_browser(lambda: first.get_attribute("data-start")), str(int(end)))
        self.assertIn("12:00", await self.in_browser(lambda: first.text))
        await self.screenshot(driver, f"{fed.calendar_url('am1')}?tz=Europe/Berlin&date={day}&duration=36h")

        await self.delete(urns)
        await self.in_browser(lambda: driver.get(page))
        blocks = await self.in_browser(lambda: driver.find_elements(By.CSS_SELECTOR, "#timeline .track .block"))
        self.assertEqual(blocks, [])
        self.assertIn("Nothing is booked", await self.in_browser(lambda: driver.find_element(By.ID, "bookings").text))
        await self.delete(running)

    async def screenshot(self, driver: Any, url: str) -> None:
        """Save a picture of C{url} in the test's folder (and where C{GENIAM_CALENDAR_SCREENSHOT} says)."""
        await self.in_browser(lambda: driver.set_window_size(1100, 1000))
        await self.in_browser(lambda: driver.get(url))
        path = Path(self.mktemp() + ".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.in_browser(lambda: driver.save_screenshot(str(path)))
        self.assertGreater(path.stat().st_size, 1000)
        wanted = os.environ.get("GENIAM_CALENDAR_SCREENSHOT")
        if wanted:
            shutil.copyfile(path, wanted)
