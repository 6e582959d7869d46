"""The dashboard (`/ui/`) in a real Chromium, driven by Playwright, against a live
``errand serve`` per test (the integration tests' :class:`Errand`: its own port and data
directory) with a Python worker running ``tests.browser.app``.

Chromium is Debian's (``/usr/bin/chromium``, or ``$ERRAND_CHROMIUM``): ``.ci/browser.sh``
installs it with apt-get, since Playwright's own download needs the internet. The tests skip
only when it is missing."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, ViewportSize, expect, sync_playwright

from tests.integration.conftest import REPO, Errand, Proc, errand_bin
from tests.integration.conftest import pytest_runtest_makereport as pytest_runtest_makereport
from tests.integration.test_scenarios import wait_until

CHROMIUM = Path(os.environ.get("ERRAND_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
SCREENSHOTS = REPO / "docs" / "screenshots"
QUEUE = "ui"
TRACE_URL_TEMPLATE = "https://traces.invalid/trace/{trace_id}"
TERMINAL = {"success", "failed", "cancelled"}

expect.set_options(timeout=10_000)


# What the tests look for on the pages.
def rows(page: Page) -> Locator:
    return page.locator("#task-table tbody tr")


def row(page: Page, task_id: str) -> Locator:
    return page.locator(f'#task-table tr[data-id="{task_id}"]')


def count_of(page: Page, state: str) -> Locator:
    return page.locator(f'#counts [data-state="{state}"] .n')


def title_state(page: Page) -> Locator:
    return page.get_by_role("heading", level=1).locator(".badge")


def step_state(page: Page, step: str) -> Locator:
    return page.locator(f'li.step[data-step="{step}"] .badge')


def search(page: Page, text: str) -> None:
    page.get_by_role("searchbox", name="Search id, correlation or request id").fill(text)
    page.get_by_role("button", name="Apply").click()


def confirm(page: Page, title: str, button: str) -> None:
    dialog = page.get_by_role("dialog", name=title)
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name=button, exact=True).click()
    expect(dialog).to_be_hidden()


@dataclass
class Dashboard:
    """A live errand with a Python worker, and one browser tab (1280×800) on it."""

    server: Errand
    worker: Proc
    page: Page
    #: Uncaught exceptions of the page's script.
    page_errors: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.server.root

    def token(self, user: str, *options: str) -> str:
        return self.server.token("--user", user, *options)

    def link(self, user: str, *options: str) -> str:
        """``errand ui --user USER OPTIONS… --url URL``: the dashboard's sign-in link."""
        done = subprocess.run(
            [str(self.server.binary), "ui", "--data-dir", str(self.server.data_dir),
             "--user", user, "--url", self.server.url, *options],
            capture_output=True, text=True, check=False,
        )
        assert done.returncode == 0, f"errand ui failed: {done.stderr}"
        link = done.stdout.strip().splitlines()[-1]
        assert link.startswith(f"{self.server.url}/ui/#token="), link
        return link

    def sign_in(self, user: str, *options: str) -> None:
        """Opens ``errand ui``'s link, as a person pasting it would, and waits for the list."""
        self.page.goto(self.link(user, *options))
        heading = "All tasks" if "--admin" in options else "My tasks"
        expect(self.page.get_by_role("heading", name=heading, level=1)).to_be_visible()
        # The page moved the token to sessionStorage and out of the address bar.
        assert "token" not in self.page.url

    def submit(self, token: str, name: str, args: dict[str, Any] | None = None, *,
               correlation_id: str | None = None, request_id: str | None = None,
               traceparent: str | None = None, delay_s: float | None = None) -> str:
        body: dict[str, Any] = {"name": name, "args": args or {}}
        if delay_s is not None:
            body["delay_s"] = delay_s
        headers = {"authorization": f"Bearer {token}"}
        if correlation_id:
            headers["x-correlation-id"] = correlation_id
        if request_id:
            headers["x-request-id"] = request_id
        if traceparent:
            headers["traceparent"] = traceparent
        r = httpx.post(f"{self.server.url}/v1/tasks", json=body, headers=headers, timeout=10)
        assert r.status_code == 202, r.text
        task_id: str = r.json()["id"]
        return task_id

    def get(self, token: str, task_id: str) -> dict[str, Any]:
        r = httpx.get(f"{self.server.url}/v1/tasks/{task_id}",
                      headers={"authorization": f"Bearer {token}"}, timeout=10)
        assert r.status_code == 200, r.text
        record: dict[str, Any] = r.json()
        return record

    def wait_status(self, token: str, task_id: str, *statuses: str,
                    timeout: float = 15) -> dict[str, Any]:
        """Polls the task until it is in one of ``statuses`` (default: any final one)."""
        wanted = set(statuses) or TERMINAL
        last: dict[str, Any] = {}

        def reached() -> bool:
            nonlocal last
            last = self.get(token, task_id)
            return last["status"] in wanted

        wait_until(reached, timeout, f"task {task_id} to be {sorted(wanted)} (last: {last})")
        return last

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / name
        self.page.screenshot(path=str(path))
        return path


# Per module, not per session: Playwright's sync API keeps an event loop running while it is
# open, and the async tests that pytest runs after these could not run theirs.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: .ci/browser.sh installs Debian's chromium "
                    "(apt-get install chromium); set ERRAND_CHROMIUM to use another")
    with sync_playwright() as playwright:
        # launch() gives every run a fresh, temporary user-data-dir.
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def start_errand(root: Path, env: dict[str, str] | None = None) -> Errand:
    binary = errand_bin()
    if not binary.exists():
        pytest.fail(f"no errand binary at {binary}: run `cargo build -p errand` (or set ERRAND_BIN)")
    server = Errand(binary, root)
    server.start(env)
    return server


@pytest.fixture
def serve_env() -> dict[str, str]:
    """Environment of the test's ``errand serve`` (a test overrides it to change a limit):
    trace ids link to a trace viewer (never opened: the tests only read the links)."""
    return {"ERRAND_TRACE_URL_TEMPLATE": TRACE_URL_TEMPLATE}


@pytest.fixture
def dash(browser: Browser, tmp_path: Path, serve_env: dict[str, str],
         request: pytest.FixtureRequest) -> Iterator[Dashboard]:
    server = start_errand(tmp_path, serve_env)
    context = None
    try:
        worker = server.worker("ui-worker", "--concurrency", "4", queue=QUEUE,
                               app="tests.browser.app:client")
        wait_until(lambda: "worker started" in worker.err(), 30, "the Python worker")
        context = browser.new_context(viewport=DESKTOP, base_url=server.url)
        page = context.new_page()
        board = Dashboard(server, worker, page)
        page.on("pageerror", lambda e: board.page_errors.append(str(e)))
        yield board
        assert not board.page_errors, f"the page's script threw: {board.page_errors}"
    finally:
        if context is not None:
            context.close()
        server.close()
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(server.logs())
