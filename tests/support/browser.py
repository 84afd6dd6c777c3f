"""Headless Chromium driven by Selenium, for the dashboard's tests.

Selenium is given Debian's chromedriver explicitly (else its driver manager tries to download
one) and Chromium runs with a fresh profile and without any background traffic. Selenium's calls
block, and the sidecar under test answers in the test's own event loop, so tests run their
browser steps in a thread (`in_thread`) while the loop serves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
WAIT_S = 10.0

T = TypeVar("T")


@contextmanager
def chromium(profile_dir: Path) -> Iterator[WebDriver]:
    """A headless Chromium with its own profile in `profile_dir`, quit on exit."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_window_size(1280, 900)
        yield driver
    finally:
        driver.quit()


def forget_everything(driver: WebDriver) -> None:
    """Drop every cookie: tests' sidecars all live on 127.0.0.1, and cookies ignore the port."""
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.set_window_size(1280, 900)


async def in_thread(steps: Callable[[], T]) -> T:
    return await asyncio.to_thread(steps)


def wait_for(driver: WebDriver, css: str) -> None:
    WebDriverWait(driver, WAIT_S).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))


def log_in(driver: WebDriver, base_url: str, token: str) -> None:
    """Sign in through the login form, as a person would."""
    driver.get(f"{base_url}/login")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    wait_for(driver, "#live")
