"""The dashboard as its users see it: isolation between users, live updates, failures and
retry, bulk cancel, and the operators' views."""

from __future__ import annotations

import re
import time

from playwright.sync_api import expect

from tests.browser.conftest import (
    QUEUE, TRACE_URL_TEMPLATE, Dashboard, confirm, count_of, row, rows, search, step_state, title_state,
)


def test_alice_sees_her_tasks_and_none_of_bobs(dash: Dashboard) -> None:
    alice, bob = dash.token("alice"), dash.token("bob")
    mine = [dash.submit(alice, "ui_pipeline", correlation_id=f"alice-order-{i}",
                        request_id=f"alice-req-{i}") for i in range(3)]
    bobs = dash.submit(bob, "ui_pipeline", correlation_id="bob-order-7", request_id="bob-req-7")
    for task_id in mine:
        dash.wait_status(alice, task_id)
    dash.wait_status(bob, bobs)
    page = dash.page

    dash.sign_in("alice")
    expect(page.locator("#who-name")).to_have_text("alice")
    expect(rows(page)).to_have_count(3)
    assert {r.get_attribute("data-id") for r in rows(page).all()} == set(mine)
    expect(page.get_by_text(bobs)).to_have_count(0)
    expect(count_of(page, "success")).to_have_text("3")
    counted = sum(int(n) for n in page.locator("#counts .n").all_inner_texts())
    assert counted == 3, "the counts hold bob's task"

    # Bob's ids find nothing for alice; hers find her task. (The counts are of all her tasks.)
    for query in ("bob-order-7", "bob-req-7", bobs):
        search(page, query)
        expect(page.get_by_text("No tasks match.")).to_be_visible()
    expect(count_of(page, "success")).to_have_text("3")
    search(page, "alice-order-1")
    expect(rows(page)).to_have_count(1)
    expect(row(page, mine[1])).to_be_visible()
    search(page, mine[2])
    expect(rows(page)).to_have_count(1)
    expect(row(page, mine[2])).to_be_visible()

    # Bob's task page, opened by its id, is not found; alice's is hers.
    page.goto(f"/ui/tasks/{bobs}")
    expect(page.get_by_role("alert")).to_have_text(re.compile("No such task"))
    expect(page.get_by_text("bob-order-7")).to_have_count(0)
    page.goto(f"/ui/tasks/{mine[0]}")
    expect(page.get_by_role("heading", name=re.compile("ui_pipeline"), level=1)).to_be_visible()
    expect(page.get_by_text("alice-order-0")).to_be_visible()


def test_a_submitted_task_appears_live_and_its_steps_run(dash: Dashboard) -> None:
    alice = dash.token("alice")
    page = dash.page
    dash.sign_in("alice")
    expect(page.get_by_text("No tasks match.")).to_be_visible()

    submitted = time.monotonic()
    task_id = dash.submit(alice, "ui_pipeline",
                          {"fetch_s": 0.3, "parse_s": 0.3, "store_s": 0.1, "gate": "gate-live"})
    expect(row(page, task_id)).to_be_visible(timeout=2500)
    appeared = time.monotonic() - submitted
    assert appeared < 2.5, f"the task appeared after {appeared:.1f} s"

    row(page, task_id).get_by_role("link", name=task_id).click()
    expect(page).to_have_url(re.compile(f"/ui/tasks/{task_id}$"))
    # `store` waits for the gate: the page follows it running, then succeeding.
    expect(step_state(page, "store")).to_have_text("running")
    expect(step_state(page, "fetch")).to_have_text("success")
    expect(step_state(page, "parse")).to_have_text("success")
    expect(title_state(page)).to_have_text("running")
    expect(page.get_by_role("progressbar", name="Progress")).to_be_visible()
    (dash.root / "gate-live").touch()
    expect(step_state(page, "store")).to_have_text("success")
    expect(title_state(page)).to_have_text("success")
    expect(page.get_by_text("100% — 3 of 3 — stored 3 records")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)

    # Back on the list, its row says so.
    page.get_by_role("link", name="← Tasks").click()
    expect(row(page, task_id).locator(".badge")).to_have_text("success")


def test_a_failed_task_shows_its_error_and_runs_again_when_retried(dash: Dashboard) -> None:
    alice = dash.token("alice")
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    task_id = dash.submit(alice, "ui_fail", {"message": "export.csv has no data rows"},
                          traceparent=f"00-{trace_id}-b7ad6b7169203331-01")
    failed = dash.wait_status(alice, task_id)
    assert failed["status"] == "failed", failed
    page = dash.page
    dash.sign_in("alice")
    expect(row(page, task_id).locator(".badge")).to_have_text("failed")
    row(page, task_id).get_by_role("link").click()

    expect(title_state(page)).to_have_text("failed")
    expect(step_state(page, "fetch")).to_have_text("success")
    expect(step_state(page, "parse")).to_have_text("failed")
    expect(page.locator('li.step[data-step="parse"]')).to_contain_text("export.csv has no data rows")
    error = page.get_by_role("region", name="Error")
    expect(error).to_contain_text("export.csv has no data rows")
    expect(error).to_contain_text("empty_export")
    expect(error).to_contain_text('"rows": 0')
    expect(page.get_by_text("No one has acted on it.")).to_be_visible()
    # The attempt that failed, with its error; the arguments; the trace id, linked.
    attempts = page.get_by_role("region", name="Attempts").locator("tbody tr")
    expect(attempts).to_have_count(1)
    expect(attempts.first.locator(".badge")).to_have_text("failed")
    expect(attempts.first).to_contain_text("empty_export: export.csv has no data rows")
    expect(page.get_by_role("region", name="Arguments")).to_contain_text('"message": "export.csv')
    trace = page.get_by_role("link", name=trace_id)
    expect(trace).to_have_attribute("href", TRACE_URL_TEMPLATE.format(trace_id=trace_id))

    page.get_by_role("button", name="Retry").click()
    confirm(page, "Retry task", "Retry")
    # It runs again (this time parse succeeds): the state and the history change.
    expect(title_state(page)).to_have_text("success")
    expect(step_state(page, "parse")).to_have_text("success")
    expect(page.get_by_role("region", name="Error")).to_have_count(0)
    expect(page.get_by_role("region", name="History")).to_contain_text("retry (requeued) by alice")
    # The failed attempt stays in the log; the successful one is the record's own.
    expect(attempts).to_have_count(2)
    expect(attempts.nth(1).locator(".badge")).to_have_text("success")
    record = dash.get(alice, task_id)
    assert record["status"] == "success" and record["attempt"] == 1, record
    assert [(a["action"], a["by"]["user_id"]) for a in record["history"]] == [("retry", "alice")]


def test_bulk_cancel_cancels_exactly_the_selected_tasks(dash: Dashboard) -> None:
    alice = dash.token("alice")
    ids = [dash.submit(alice, "ui_pipeline", {"records": i}, delay_s=600) for i in range(4)]
    page = dash.page
    dash.sign_in("alice")
    expect(rows(page)).to_have_count(4)
    expect(count_of(page, "scheduled")).to_have_text("4")
    expect(page.get_by_role("button", name="Cancel selected")).to_be_disabled()

    chosen, kept = [ids[0], ids[2]], [ids[1], ids[3]]
    for task_id in chosen:
        page.get_by_role("checkbox", name=f"Select task {task_id}").check()
    expect(page.locator("#selected-count")).to_have_text("2 selected")
    page.get_by_role("button", name="Cancel selected").click()
    confirm(page, "Cancel tasks", "Cancel")
    expect(page.get_by_role("status")).to_have_text("Done: 2 cancelled.")

    for task_id in chosen:
        expect(row(page, task_id).locator(".badge")).to_have_text("cancelled")
    for task_id in kept:
        expect(row(page, task_id).locator(".badge")).to_have_text("scheduled")
    expect(count_of(page, "cancelled")).to_have_text("2")
    expect(count_of(page, "scheduled")).to_have_text("2")
    expect(page.locator("#selected-count")).to_have_text("0 selected")
    assert {t: dash.get(alice, t)["status"] for t in ids} == {
        ids[0]: "cancelled", ids[1]: "scheduled", ids[2]: "cancelled", ids[3]: "scheduled"}


def test_an_admin_sees_everyone_and_the_workers_but_alice_does_not(dash: Dashboard) -> None:
    alice, bob = dash.token("alice"), dash.token("bob")
    hers, his = dash.submit(alice, "ui_pipeline"), dash.submit(bob, "ui_pipeline")
    dash.wait_status(alice, hers)
    dash.wait_status(bob, his)
    page = dash.page

    dash.sign_in("root", "--admin")
    expect(page.locator("#who-name")).to_have_text("root (admin)")
    expect(row(page, hers)).to_contain_text("alice")
    expect(row(page, his)).to_contain_text("bob")
    expect(count_of(page, "success")).to_have_text("2")
    nav = page.get_by_role("navigation", name="Views")
    nav.get_by_role("link", name="Workers").click()
    expect(page.get_by_role("heading", name="Workers", level=1)).to_be_visible()
    worker = page.locator("#admin-body tbody tr").filter(has_text="ui-worker/")
    expect(worker).to_have_count(1)
    expect(worker.locator('td[data-label="Language"]')).to_have_text("python")
    expect(worker.locator('td[data-label="Queues"]')).to_have_text(QUEUE)
    expect(worker.locator('td[data-label="Concurrency"]')).to_have_text("4")
    expect(worker.locator('td[data-label="Alive"]')).to_have_text("yes")
    nav.get_by_role("link", name="Queues").click()
    expect(page.locator("#admin-body tbody tr").filter(has_text=QUEUE)).to_have_count(1)
    nav.get_by_role("link", name="Activity").click()
    expect(page.get_by_role("figure")).to_have_count(6)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    dash.sign_in("alice")
    expect(nav.get_by_role("link", name="Workers")).to_be_hidden()
    for view in ("workers", "queues", "activity"):
        with page.expect_response(f"**/v1/admin/{view}") as answer:
            page.goto(f"/ui/{view}")
        assert answer.value.status == 403, f"/v1/admin/{view} answered alice {answer.value.status}"
        expect(page.get_by_role("alert")).to_have_text("This view is for operators (the admin role).")
        expect(page.locator("#admin-body table, #admin-body figure")).to_have_count(0)
