"""The dashboard at the sidecar's `/`: what it shows, what its buttons do, and who may press them.

Browser tests drive headless Chromium (tests/support/browser.py) against the sidecar of a real
in-process worker; the rules of sessions, CSRF and read-only mode are checked over plain HTTP.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from app.config import Settings
from app.jobs.resources import Resources
from app.queue import control
from app.runtime.process import Process
from app.web.auth import parse_tokens
from app.web.dashboard import session
from tests.support.browser import chromium, forget_everything, in_thread, log_in, wait_for
from tests.support.system import require_binary
from tests.support.worker import in_process_worker, wait_for_runs

QUEUE = "intake-routing"
WRITE, READ = "write-secret-1", "read-secret-2"
TOKENS = f"{WRITE},ro:{READ}"


@pytest.fixture(scope="module")
def browser_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One Chromium for the module's browser tests (starting one costs about a second)."""
    require_binary("chromium")
    require_binary("chromedriver")
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


@pytest.fixture
def browser(browser_session: WebDriver) -> WebDriver:
    forget_everything(browser_session)
    return browser_session


@asynccontextmanager
async def dashboard(settings: Settings) -> AsyncIterator[tuple[Process, str]]:
    """A real worker serving QUEUE, and the base URL of its sidecar."""
    async with in_process_worker(settings, [QUEUE]) as process:
        yield process, f"http://127.0.0.1:{settings.health.port}"


async def dead_letter(res: Resources, tag: str) -> int:
    """Run a probe that fails permanently once; the id of its dead letter."""
    await res.enqueuer.enqueue("probe", {"tag": tag, "failTimes": 1, "error": "permanent"}, queue=QUEUE)
    async with asyncio.timeout(15):
        while not (letters := await res.dlq.list(queue=QUEUE)):
            await asyncio.sleep(0.05)
    return letters[0].id


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page carries no CSRF token"
    return found.group(1)


async def http_login(client: aiohttp.ClientSession, base: str, token: str) -> str:
    """Sign in over HTTP; the CSRF token of the session's pages."""
    async with client.post(f"{base}/login", data={"token": token}, headers={"Origin": base}) as r:
        assert r.status == 200, await r.text()  # the 303 to / was followed
        return csrf_of(await r.text())


def http_client() -> aiohttp.ClientSession:
    # aiohttp keeps no cookies of IP addresses unless told to.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


# --- in the browser -------------------------------------------------------------------------


async def test_overview_lists_every_queue_and_its_pause_button_pauses_the_queue(
        make_settings: Callable[..., Settings], res: Resources, browser: WebDriver, tmp_path: Path) -> None:
    """Signed in with a write token, the overview shows a card per configured queue, warns about
    the queues no process serves (this worker serves one), and its Pause button pauses the queue
    for every process (control.paused) and turns into Resume. A screenshot is saved."""
    settings = make_settings(api_token=TOKENS)
    screenshot = tmp_path / "dashboard-overview.png"
    async with dashboard(settings) as (_, base):
        def steps() -> tuple[list[str], list[str]]:
            log_in(browser, base, WRITE)
            cards = browser.find_elements(By.CSS_SELECTOR, "section.card")
            shown = [c.get_attribute("data-queue") or "" for c in cards]
            warned = [c.get_attribute("data-queue") or "" for c in cards
                      if c.find_elements(By.CSS_SELECTOR, ".warning")]
            browser.find_element(By.ID, f"pause-{QUEUE}").click()
            wait_for(browser, f"#resume-{QUEUE}")
            browser.save_screenshot(str(screenshot))
            return shown, warned

        shown, warned = await in_thread(steps)
        assert shown == list(settings.queues.queues)
        assert sorted(warned) == sorted(q for q in settings.queues.queues if q != QUEUE)
        assert QUEUE in await control.paused(res.redis)
    assert screenshot.stat().st_size > 10_000
    print(f"dashboard screenshot: {screenshot}")


async def test_counts_refresh_live_without_reloading_the_page(
        make_settings: Callable[..., Settings], res: Resources, browser: WebDriver) -> None:
    """Jobs enqueued while the overview is open appear in its Waiting count within seconds,
    and the page was not reloaded (a marker set on `window` survives)."""
    await control.pause(res.redis, QUEUE)
    async with dashboard(make_settings()) as (_, base):
        def open_page() -> None:
            browser.get(base)
            browser.execute_script("window.stillHere = true")

        await in_thread(open_page)
        for n in range(3):
            await res.enqueuer.enqueue("probe", {"tag": f"live{n}"}, queue=QUEUE)

        def waiting_count() -> str:
            try:
                return str(browser.find_element(By.CSS_SELECTOR, f'[data-queue="{QUEUE}"] .counts dd').text)
            except StaleElementReferenceException:  # the live refresh replaced it between find and read
                return ""

        async with asyncio.timeout(10):
            while await in_thread(waiting_count) != "3":
                await asyncio.sleep(0.2)
        assert await in_thread(lambda: browser.execute_script("return window.stillHere")) is True


async def test_a_dead_letter_is_retried_from_the_dead_letters_page(
        make_settings: Callable[..., Settings], res: Resources, browser: WebDriver) -> None:
    """The Retry button of a dead letter enqueues its job again: it runs, and the letter is
    marked RETRIED."""
    async with dashboard(make_settings(api_token=TOKENS)) as (_, base):
        letter_id = await dead_letter(res, "retry-me")

        def steps() -> str:
            log_in(browser, base, WRITE)
            browser.get(f"{base}/dead-letters")
            browser.find_element(By.ID, f"retry-{letter_id}").click()
            wait_for(browser, ".notice")
            return str(browser.find_element(By.CSS_SELECTOR, ".notice").text)

        assert "enqueued again" in await in_thread(steps)
        await wait_for_runs(res, "retry-me", "done", 1)
        assert (await res.dlq.get(letter_id)).status == "RETRIED"


async def test_a_read_only_session_sees_no_action_buttons(
        make_settings: Callable[..., Settings], res: Resources, browser: WebDriver) -> None:
    """Signed in with a `ro:` token, no page shows a form that changes anything (pause, retry,
    delete): only the Log out button posts."""
    async with dashboard(make_settings(api_token=TOKENS)) as (_, base):
        letter_id = await dead_letter(res, "ro")
        job_id = (await res.dlq.get(letter_id)).job_id

        def steps() -> dict[str, list[str]]:
            log_in(browser, base, READ)
            found = {}
            for path in ("/", f"/queues/{QUEUE}?state=dead", "/dead-letters", f"/job?id={job_id}"):
                browser.get(base + path)
                wait_for(browser, "main")
                found[path] = [(b.text or b.get_attribute("id") or "") for b in browser.find_elements(
                    By.CSS_SELECTOR, "form[method=post] button")]
            return found

        buttons = await in_thread(steps)
        assert buttons == {path: ["Log out"] for path in buttons}


async def test_every_page_fits_a_375_px_screen_without_horizontal_scroll(
        make_settings: Callable[..., Settings], res: Resources, browser: WebDriver) -> None:
    """At 375x800 (a small phone), with a write session (the most buttons) and a dead letter to
    show, no page is wider than the screen."""
    async with dashboard(make_settings(api_token=TOKENS)) as (_, base):
        letter_id = await dead_letter(res, "narrow")
        job_id = (await res.dlq.get(letter_id)).job_id

        def steps() -> dict[str, int]:
            log_in(browser, base, WRITE)
            browser.set_window_size(375, 800)
            widths = {}
            for path in ("/", f"/queues/{QUEUE}?state=dead", "/dead-letters", f"/job?id={job_id}", "/login"):
                browser.get(base + path)
                wait_for(browser, "main")
                assert browser.execute_script("return window.innerWidth") == 375
                widths[path] = int(browser.execute_script("return document.documentElement.scrollWidth"))
            return widths

        widths = await in_thread(steps)
        assert {p: w for p, w in widths.items() if w > 375} == {}


# --- over HTTP ------------------------------------------------------------------------------


async def test_login_with_a_wrong_token_fails_and_a_right_one_sets_a_strict_httponly_cookie(
        make_settings: Callable[..., Settings]) -> None:
    """A wrong token gets 401 and no cookie; the right one a session cookie that is HttpOnly,
    SameSite=Strict, Path=/, and holds neither token."""
    async with dashboard(make_settings(api_token=TOKENS)) as (_, base), aiohttp.ClientSession() as client:
        async with client.post(f"{base}/login", data={"token": "nope"}, headers={"Origin": base},
                               allow_redirects=False) as r:
            assert r.status == 401
            assert session.COOKIE_NAME not in r.cookies
        async with client.post(f"{base}/login", data={"token": WRITE}, headers={"Origin": base},
                               allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (303, "/")
            header = r.headers["Set-Cookie"]
    assert header.startswith(f"{session.COOKIE_NAME}=")
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/" in header
    assert WRITE not in header and READ not in header


async def test_pages_need_a_session_when_tokens_are_set(make_settings: Callable[..., Settings]) -> None:
    """Without a session, or with a tampered cookie, a page redirects to the login form."""
    async with dashboard(make_settings(api_token=TOKENS)) as (_, base):
        async with http_client() as client:
            await http_login(client, base, READ)
            cookie = next(c for c in client.cookie_jar if c.key == session.COOKIE_NAME).value
        body, _, signature = cookie.partition(".")
        for cookies in ({}, {session.COOKIE_NAME: f"{body}.{signature[::-1]}"}, {session.COOKIE_NAME: cookie}):
            async with aiohttp.ClientSession(cookies=cookies) as client, client.get(
                    f"{base}/", allow_redirects=False) as r:
                where = (r.status, r.headers.get("Location"))
            assert where == ((200, None) if cookies.get(session.COOKIE_NAME) == cookie else (303, "/login"))


async def test_an_action_without_its_csrf_token_or_from_another_site_is_refused(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """A write session's POST without the CSRF token, or with it from another origin, is
    refused with 403 and changes nothing; with both right it pauses the queue."""
    async with dashboard(make_settings(api_token=TOKENS)) as (_, base), http_client() as client:
        csrf = await http_login(client, base, WRITE)
        url = f"{base}/queues/{QUEUE}/pause"
        async with client.post(url, data={}, headers={"Origin": base}, allow_redirects=False) as r:
            assert r.status == 403
        async with client.post(url, data={"csrf": csrf}, headers={"Origin": "http://evil.example"},
                               allow_redirects=False) as r:
            assert r.status == 403
        assert await control.paused(res.redis) == set()
        async with client.post(url, data={"csrf": csrf}, headers={"Origin": base}, allow_redirects=False) as r:
            assert r.status == 303
        assert await control.paused(res.redis) == {QUEUE}


async def test_a_read_only_session_cannot_act_even_with_its_csrf_token(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """A `ro:` session's POST is refused with 403, CSRF token and origin notwithstanding."""
    async with dashboard(make_settings(api_token=TOKENS)) as (_, base), http_client() as client:
        csrf = await http_login(client, base, READ)
        async with client.post(f"{base}/queues/{QUEUE}/pause", data={"csrf": csrf}, headers={"Origin": base},
                               allow_redirects=False) as r:
            assert r.status == 403
        assert await control.paused(res.redis) == set()


async def test_without_api_token_the_dashboard_is_open_and_read_only(
        make_settings: Callable[..., Settings], res: Resources) -> None:
    """No API_TOKEN: the overview opens without signing in, renders no action, and any action
    is refused with 403."""
    async with dashboard(make_settings()) as (_, base), http_client() as client:
        async with client.get(f"{base}/") as r:
            assert r.status == 200
            html = await r.text()
        assert QUEUE in html and "data-action" not in html and 'method="post"' not in html
        async with client.post(f"{base}/queues/{QUEUE}/pause", data={}, headers={"Origin": base}) as r:
            assert r.status == 403
        assert await control.paused(res.redis) == set()


def test_a_session_cookie_is_refused_once_expired_tampered_or_its_token_removed() -> None:
    """The cookie is trusted only with a valid signature, before its expiry, while the token it
    names is still configured; whether it may act comes from the configuration."""
    tokens = parse_tokens(Settings.load({"API_TOKEN": TOKENS}).api.token)
    key = session.signing_key(tokens)
    cookie = session.issue(key, tokens[0], now=1000.0)
    viewer = session.read(key, tokens, cookie, now=1001.0)
    assert viewer is not None and (viewer.label, viewer.can_act) == ("token-1", True)
    read_only = session.read(key, tokens, session.issue(key, tokens[1], now=1000.0), now=1001.0)
    assert read_only is not None and not read_only.can_act
    assert session.read(key, tokens, cookie, now=1000.0 + session.SESSION_TTL_S + 1) is None
    assert session.read(key, tokens, cookie[:-2] + "xx", now=1001.0) is None
    fewer = tokens[1:]
    assert session.read(session.signing_key(fewer), fewer, cookie, now=1001.0) is None
