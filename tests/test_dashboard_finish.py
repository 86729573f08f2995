"""The dashboard feels finished (#21), in a real headless Chromium against real `monq
serve` and `monq summarizer` processes: the live indicator on every page, the
overview's live jobs filled at once, a time axis on the chart, a job page that
offers what its state allows, shows a traceback as lines and the worker of a
finished job, says when a job does not exist, paging buttons that cannot page past
the end, a favicon, no delete button for the built-in admin and roles, aligned
login fields, and a form to add a schedule. A screenshot of every page goes to
test-artifacts/screenshots/ (named finish-*)."""

from __future__ import annotations

import re
import urllib.request

import pytest
from playwright.sync_api import Browser, Page, expect

from monq.testing import JobRunner
from tests.api_fixtures import ADMIN_PASSWORD
from tests.test_dashboard import browser, cli, log_in, monq, server, shot  # noqa: F401 - fixtures

# in test_dashboard.py's group: its worker's chromium (a module fixture) serves these
# too; outside it, each test landed on some worker and launched a chromium of its own
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

JOB = "monq.jobs.example.DummyJob"
Server = tuple[str, dict[str, str]]


def actions(page: Page) -> list[str]:
    return page.locator("#actions button").evaluate_all("bs => bs.map(b => b.dataset.action)")


def test_every_page_is_live_and_the_overview_shows_queued_jobs_with_a_time_axis(
        browser: Browser, server: Server) -> None:  # noqa: F811
    base, env = server
    for _ in range(2):
        cli(env, "enqueue", JOB, "--hold")  # no worker: they stay queued
    page = log_in(browser, base, "admin", ADMIN_PASSWORD)
    rows = page.locator("#live-jobs tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text(JOB)
    expect(rows.first.locator(".state")).to_have_text("pending")
    chart = page.locator("#chart svg")
    expect(chart).to_have_attribute("data-axis", re.compile(
        r"^(\d\d:\d\d( [AP]M)?\|){2}\d\d:\d\d( [AP]M)?$"))
    expect(page.locator("#live")).to_have_text("live")
    assert page.evaluate("document.querySelector('link[rel=icon]').href").endswith("favicon.svg")
    shot(page, "finish-overview")
    for path, loaded in (("/enqueue", "#params label"), ("/workers", "#workers-table tbody tr"),
                         ("/schedules", "#schedules-table tbody tr"),
                         ("/notifications", "#notifications-table tbody tr"),
                         ("/users", "#users-table tbody tr"), ("/jobs", "#jobs-table tbody tr")):
        page.goto(base + path)
        expect(page.locator(loaded).first).to_be_visible()  # drawn before the screenshot
        expect(page.locator("#live")).to_have_text("live")
        shot(page, "finish-" + path.strip("/"))
    with urllib.request.urlopen(base + "/favicon.ico") as reply:  # redirected to the svg
        assert reply.status == 200 and reply.headers["Content-Type"] == "image/svg+xml"


def test_the_job_page_offers_what_the_state_allows(
        browser: Browser, server: Server, db_url: str) -> None:  # noqa: F811
    base, env = server
    with JobRunner(db_url) as runner:  # 1: ended in error, on the runner's "worker"
        failed = runner.run("tests.testing_jobs.Broken")
        done = runner.run("tests.testing_jobs.Adder", a=1)  # 2: complete
    assert failed.state == "error" and done.state == "complete"
    cli(env, "enqueue", JOB)  # 3: pending
    cli(env, "enqueue", JOB, "--hold")  # 4: pending, held
    cli(env, "enqueue", JOB)  # 5: killed
    assert monq("kill", "5", env=env).returncode == 0
    page = log_in(browser, base, "admin", ADMIN_PASSWORD)
    for number, expected in ((1, ["restart"]), (2, []),
                             (3, ["kill", "remove", "restart", "hold"]),
                             (4, ["kill", "remove", "restart", "resume"]), (5, ["restart"])):
        page.goto(f"{base}/jobs/{number}")
        expect(page.locator("#job-title")).to_contain_text(f"#{number} ")
        expect(page.locator("#job-events tbody tr").first).to_be_visible()
        assert actions(page) == expected, (number, actions(page))
        shot(page, f"finish-job-{number}")
    page.goto(f"{base}/jobs/1")
    traceback = page.locator("#job-error")
    expect(traceback).to_be_visible()
    expect(traceback).to_contain_text("ValueError: the data is not there")
    assert traceback.evaluate("e => getComputedStyle(e).whiteSpace") == "pre"
    assert traceback.evaluate("e => e.textContent.split('\\n').length") > 3
    worker = page.locator("#job-fields dt", has_text="Worker").locator(
        "xpath=following-sibling::dd[1]")
    expect(worker).to_have_text(re.compile(r"^test-\d+$"))
    shot(page, "finish-job-error")
    # restart goes to the job that replaces it
    page.click("#actions button[data-action=restart]")
    expect(page.locator("#job-title")).to_contain_text("#6 ")


def test_a_missing_job_says_so_without_a_skeleton(
        browser: Browser, server: Server) -> None:  # noqa: F811
    base, _ = server
    page = log_in(browser, base, "admin", ADMIN_PASSWORD)
    page.goto(base + "/jobs/9999")
    expect(page.locator("h1")).to_have_text("Job not found")
    expect(page.locator("#missing .message")).to_have_text(
        "There is no job 9999 (or you may not see it).")
    expect(page.locator("#job")).to_be_hidden()
    expect(page.locator("#job-events")).to_be_hidden()
    expect(page.locator("#live")).to_have_text("live")
    shot(page, "finish-job-missing")


def test_paging_buttons_stop_at_the_ends(
        browser: Browser, server: Server) -> None:  # noqa: F811
    base, env = server
    cli(env, "enqueue", JOB, "--hold")
    page = log_in(browser, base, "admin", ADMIN_PASSWORD)
    page.goto(base + "/jobs")
    expect(page.locator("#page-info")).to_have_text("page 1 of 1 (1 jobs)")
    expect(page.locator("#prev")).to_be_disabled()
    expect(page.locator("#next")).to_be_disabled()
    shot(page, "finish-jobs-one-page")


def test_users_login_and_schedules_forms(
        browser: Browser, server: Server) -> None:  # noqa: F811
    base, _ = server
    page = browser.new_page()
    page.goto(base + "/login")
    user = page.locator("#login-username").bounding_box()
    password = page.locator("#login-password").bounding_box()
    assert user and password and user["x"] == password["x"] and user["width"] == password["width"]
    shot(page, "finish-login")
    page.fill("#login-username", "admin")
    page.fill("#login-password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(base + "/")

    page.goto(base + "/users")
    page.fill("#user-form input[name=name]", "ann")
    page.fill("#user-form input[name=email]", "ann@example.com")
    page.fill("#user-form input[name=password]", "ann-password-1")
    page.fill("#user-form input[name=role]", "standard_user")
    page.click("#user-form button[type=submit]")
    expect(page.locator("#users-table tbody tr", has_text="ann@example.com")).to_have_count(1)
    for name in ("admin", "standard_user"):
        rows = page.locator("#users-table tbody tr").filter(
            has=page.locator("td:first-child", has_text=re.compile(f"^{name}$")))
        expect(rows.first).to_be_visible()
        expect(rows.locator("button.delete")).to_have_count(0)
    expect(page.locator("#users-table tbody tr", has_text="ann@example.com")
           .locator("button.delete")).to_have_count(1)
    shot(page, "finish-users")

    page.goto(base + "/schedules")
    page.fill("#schedule-name", "nightly")
    page.fill("#schedule-job", JOB)
    page.fill("#schedule-cron", "30 2 * * *")
    page.fill("#schedule-timezone", "Europe/Berlin")
    page.fill("#schedule-args", '{"sleep": 1}')
    page.click("#schedule-form button[type=submit]")
    row = page.locator("#schedules-table tbody tr[data-schedule=nightly]")
    expect(row).to_contain_text("Europe/Berlin")
    expect(row.locator(".next")).not_to_have_text("")
    page.fill("#schedule-name", "paused")
    page.fill("#schedule-job", JOB)
    page.fill("#schedule-cron", "*/5 * * * *")
    page.check("#schedule-form input[name=disabled]")
    page.click("#schedule-form button[type=submit]")
    paused = page.locator("#schedules-table tbody tr[data-schedule=paused]")
    expect(paused).to_contain_text("no")
    expect(paused.locator(".next")).to_have_text("")
    bad = page.locator("#flash")
    page.fill("#schedule-name", "broken")
    page.fill("#schedule-job", JOB)
    page.fill("#schedule-cron", "not a cron")
    page.click("#schedule-form button[type=submit]")
    expect(bad).to_contain_text("cron")
    shot(page, "finish-schedules")
