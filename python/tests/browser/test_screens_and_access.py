"""The dashboard's looks and reach: the screenshots of docs/screenshots, an expired token,
and a keyboard-only pass with an accessible name on every control."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import (
    PHONE, TRACE_URL_TEMPLATE, Dashboard, confirm, row, rows, step_state, title_state,
)

#: Every control the dashboard draws.
CONTROLS = "button:visible, input:visible, select:visible, textarea:visible, a[href]:visible"


def assert_every_control_is_named(page: Page) -> None:
    controls = page.locator(CONTROLS)
    assert controls.count() > 0
    for control in controls.all():
        expect(control).to_have_accessible_name(re.compile(r"\S"))


def focused(page: Page) -> str:
    """The focused element, by its accessible label as the page sets it."""
    label: str = page.evaluate("""() => {
        const el = document.activeElement;
        if (!el || el === document.body) return "";
        const by = el.getAttribute("aria-label") || (el.labels && el.labels[0] && el.labels[0].textContent);
        return (by || el.textContent || el.id || el.tagName).trim().replace(/\\s+/g, " ");
    }""")
    return label


def tab_until(page: Page, label: str, limit: int = 60, back: bool = False) -> list[str]:
    """Presses Tab (Shift+Tab when ``back``) until ``label`` has the focus; returns the labels
    passed on the way."""
    seen: list[str] = []
    for _ in range(limit):
        page.keyboard.press("Shift+Tab" if back else "Tab")
        seen.append(focused(page))
        if seen[-1] == label:
            return seen
    raise AssertionError(f"Tab never reached {label!r}; it went through {seen}")


def test_screenshots_of_the_list_and_a_task(dash: Dashboard) -> None:
    alice = dash.token("alice")
    for i in range(3):
        dash.submit(alice, "ui_pipeline", {"records": 10 * (i + 1)},
                    correlation_id=f"order-{1041 + i}")
    failed = dash.submit(alice, "ui_fail", correlation_id="export-77")
    dash.wait_status(alice, failed)
    for i in range(2):
        dash.submit(alice, "ui_pipeline", delay_s=3600, correlation_id=f"nightly-{i}")
    running = dash.submit(alice, "ui_pipeline", {"records": 250, "gate": "gate-shot"},
                          correlation_id="order-1099", request_id="req-7f3a",
                          traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    dash.wait_status(alice, running, "running")
    page = dash.page
    dash.sign_in("alice")
    expect(rows(page)).to_have_count(7)
    expect(row(page, running).locator(".badge")).to_have_text("running")
    expect(page.locator('#counts [data-state="success"] .n')).to_have_text("3")
    dash.screenshot("dashboard-list.png")

    page.goto(f"/ui/tasks/{running}")
    expect(step_state(page, "store")).to_have_text("running")
    expect(step_state(page, "parse")).to_have_text("success")
    dash.screenshot("dashboard-task.png")

    page.set_viewport_size(PHONE)
    page.goto("/ui/")
    expect(rows(page)).to_have_count(7)
    # Nothing is wider than the phone's screen.
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the list is {width} px wide on a {PHONE['width']} px phone"
    dash.screenshot("dashboard-list-phone.png")
    (dash.root / "gate-shot").touch()
    dash.wait_status(alice, running)


@pytest.fixture
def serve_env() -> dict[str, str]:
    # No leeway on `exp`, so that a 1 s token is refused a second later (default: 30 s).
    return {"ERRAND_TOKEN_LEEWAY": "0s", "ERRAND_TRACE_URL_TEMPLATE": TRACE_URL_TEMPLATE}


def test_an_expired_token_returns_to_the_sign_in_form(dash: Dashboard) -> None:
    page = dash.page
    page.goto(dash.link("alice", "--ttl", "1s"))
    form = page.get_by_role("heading", name="Sign in")
    expect(form).to_be_visible(timeout=5000)
    expect(page.get_by_role("alert")).to_have_text(re.compile(r"Signed out: .*expired.*new token"))
    expect(page.get_by_role("textbox", name="Bearer token")).to_be_focused()
    expect(page.get_by_role("navigation", name="Views")).to_be_hidden()
    assert page.evaluate("() => sessionStorage.getItem('errand.token')") is None

    # Pasting a good token signs in again.
    page.get_by_role("textbox", name="Bearer token").fill(dash.token("alice"))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="My tasks")).to_be_visible()


def test_keyboard_only_with_named_controls(dash: Dashboard) -> None:
    alice = dash.token("alice")
    ids = [dash.submit(alice, "ui_pipeline", delay_s=600) for _ in range(2)]
    page = dash.page
    dash.sign_in("alice")
    expect(rows(page)).to_have_count(2)
    assert_every_control_is_named(page)

    # From the top of the page: the filters, the bulk buttons, then the rows' checkboxes.
    page.locator("body").focus()
    passed = tab_until(page, "Search id, correlation or request id")
    assert "Skip to content" in passed
    for label in ("State", "Task name", "Queue", "Created after", "Created before"):
        tab_until(page, label, limit=8)
    passed = tab_until(page, f"Select task {ids[0]}", limit=20)
    assert {"Apply", "Clear", "Retry all matching", "Cancel all matching",
            "Select every task on this page"} <= set(passed), passed
    # The list refreshes every second: the focus stays where it is.
    page.wait_for_timeout(1500)
    assert focused(page) == f"Select task {ids[0]}"
    page.keyboard.press("Space")
    expect(page.locator("#selected-count")).to_have_text("1 selected")
    page.wait_for_timeout(1200)
    assert focused(page) == f"Select task {ids[0]}"

    # Back to the bulk buttons, now enabled, and through the dialog by keyboard.
    tab_until(page, "Cancel selected", limit=20, back=True)
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Cancel tasks")
    expect(dialog).to_be_visible()
    assert_every_control_is_named(page)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert dash.get(alice, ids[0])["status"] == "scheduled"
    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    tab_until(page, "Cancel", limit=3)
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("Done: 1 cancelled.")
    expect(row(page, ids[0]).locator(".badge")).to_have_text("cancelled")
    expect(row(page, ids[1]).locator(".badge")).to_have_text("scheduled")

    # A task's page: the link opens with Enter; its controls are named too.
    page.get_by_role("link", name=ids[0]).focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"/ui/tasks/{ids[0]}$"))
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    assert_every_control_is_named(page)
    page.get_by_role("button", name="Retry").focus()
    page.keyboard.press("Enter")
    confirm(page, "Retry task", "Retry")
    expect(title_state(page)).not_to_have_text("cancelled")
