"""The dashboard in a real headless Chromium (Debian's package, driven by playwright
with ``executable_path``) against real `monq serve`, `monq summarizer` and `monq
worker` processes. A screenshot of every page goes to test-artifacts/screenshots/."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from monq.core.embedded import free_port
from tests.api_fixtures import ADMIN_PASSWORD
from tests.conftest import ROOT
from tests.helpers import CliResult, run_cli, spawn_monq, wait_for_line

# one worker runs them all under --dist loadgroup: one chromium, not one per worker
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.xdist_group("browser")]

SHOTS = ROOT / "test-artifacts" / "screenshots"
# A page waits for what it must show, up to this long: playwright's 5 s default ran out
# while a loaded machine hashed a login password. A limit for a failing test, not a speed.
WAIT_MS = 30_000
expect.set_options(timeout=WAIT_MS)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
JOB = "monq.jobs.example.DummyJob"
LOGGING_JOB = "monq.jobs.example.LoggingJob"


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("browser tests need Debian's chromium: apt-get install chromium")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(),
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def server(monq_env: dict[str, str]) -> Iterator[tuple[str, dict[str, str]]]:
    """`monq serve` and `monq summarizer` on this test's database: (base URL, env)."""
    port = free_port()
    env = {**monq_env, "MONQ_API_PORT": str(port), "MONQ_API_ADMIN_PASSWORD": ADMIN_PASSWORD,
           "PYTHONPATH": str(ROOT)}
    with spawn_monq("serve", env=env) as api, spawn_monq("summarizer", env=env):
        wait_for_line(api, "API at")
        yield f"http://127.0.0.1:{port}", env


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(browser: Browser, base: str, user: str, password: str) -> Page:
    page = browser.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(base + "/")
    expect(page).to_have_url(base + "/login?next=%2F")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    expect(page).to_have_url(base + "/")
    return page


def monq(*args: str, env: dict[str, str]) -> CliResult:
    """`monq ARGS` in this process (test_cli_wiring proves the executable), on a thread
    of its own: playwright's sync API keeps an event loop running on this one."""
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(run_cli, *args, env=env).result()


def cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = monq(*args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def api_call(base: str, method: str, path: str, token: str | None = None,
             body: Any = None) -> dict[str, Any]:
    import urllib.request

    request = urllib.request.Request(
        base + "/api/v1" + path, method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json",
                 **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return dict(json.load(reply))


def test_the_dashboard_walkthrough(browser: Browser, server: tuple[str, dict[str, str]],
                                   start_worker: Callable[..., subprocess.Popen[str]]
                                   ) -> None:
    base, env = server
    login = browser.new_page()
    login.goto(base + "/login")
    shot(login, "login")
    login.close()
    page = log_in(browser, base, "admin", ADMIN_PASSWORD)
    start_worker()

    # enqueue a job from the form generated from its parameters
    page.goto(base + "/enqueue")
    page.select_option("#jobtype", JOB)
    page.fill("input[name='arg:sleep']", "0.3")
    shot(page, "enqueue")
    page.click("#enqueue-form button[type=submit]")
    expect(page.locator("#job-state")).to_have_text("complete", timeout=30_000)
    expect(page.locator("#job-events")).to_contain_text("complete_job")
    shot(page, "job-complete")

    # a job enqueued from the CLI goes from pending to complete on the overview, live
    page.goto(base + "/")
    expect(page.locator("#live")).to_have_text("live")
    page.evaluate("window.notReloaded = true")
    held = cli(env, "enqueue", LOGGING_JOB, "lines=3", "--hold")
    row = page.locator(f"tr[data-job='{held['_id']}']")
    expect(row.locator(".state")).to_have_text("pending", timeout=15_000)
    expect(row.locator(".name")).to_have_text(LOGGING_JOB)
    assert monq("resume", held["_id"], env=env).returncode == 0
    expect(row.locator(".state")).to_have_text("complete", timeout=30_000)
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator(".count[data-state='total'] .n")).not_to_have_text("\u2013")
    shot(page, "overview")

    # open its detail, with its events and log
    row.locator(".name a").click()
    expect(page).to_have_url(f"{base}/jobs/{held['_id']}")
    expect(page.locator("#job-title")).to_have_text(f"#{held['number']} {LOGGING_JOB}")
    expect(page.locator("#job-events")).to_contain_text("resume_job")
    expect(page.locator("#job-log")).to_contain_text("line 3 of 3", timeout=10_000)
    shot(page, "job-detail")

    # kill a running job from its page
    running = cli(env, "enqueue", JOB, "sleep=60")
    page.goto(f"{base}/jobs/{running['_id']}")
    expect(page.locator("#job-state")).to_have_text("running", timeout=30_000)
    shot(page, "job-running")
    page.click("button[data-action=kill]")
    expect(page.locator("#job-state")).to_have_text("killed", timeout=15_000)

    assert monq("schedules", "add", "hourly-dummy", JOB, "0 * * * *", env=env
                ).returncode == 0
    page.goto(base + "/schedules")
    schedule = page.locator("#schedules-table tbody tr", has_text="hourly-dummy")
    expect(schedule).to_contain_text("0 * * * *")
    schedule.locator("button", has_text="disable").click()
    expect(schedule.locator("button")).to_have_text("enable")
    assert cli(env, "schedules", "show", "hourly-dummy")["enabled"] is False

    for name, path, ready in (("jobs", "/jobs", "#jobs-table tbody tr"),
                              ("workers", "/workers", "#workers-table tbody tr"),
                              ("users", "/users", "#users-table tbody tr"),
                              ("schedules", "/schedules", "#schedules-table tbody tr"),
                              ("notifications", "/notifications",
                               "#notifications-table tbody tr")):
        page.goto(base + path)
        page.wait_for_selector(ready)
        shot(page, name)
    expect(page.locator("#workers-table, #users-table, #notifications-table").first
           ).to_be_visible()
    page.goto(base + "/workers")
    expect(page.locator("#workers-table")).to_contain_text("alive")
    page.goto(base + "/jobs?state=killed&finished=true")
    expect(page.locator("#jobs-table")).to_contain_text(f"{running['number']}")


def test_a_restricted_user_sees_unauthorized_jobs_and_no_kill_button(
        browser: Browser, server: tuple[str, dict[str, str]]) -> None:
    base, env = server
    admin = str(api_call(base, "POST", "/login", body={
        "username": "admin", "password": ADMIN_PASSWORD})["data"]["token"])
    api_call(base, "POST", "/roles", admin, {
        "name": "viewer", "email": "viewer@example.com", "password": "viewer-password-1",
        "role": ["standard_user"],
        "perm": ["api://monq.api.jobs/r", f"job://{JOB}/r"]})
    page = log_in(browser, base, "viewer", "viewer-password-1")
    assert "Users and roles" not in page.locator("nav").inner_text()
    expect(page.locator("#live")).to_have_text("live")
    secret = cli(env, "enqueue", "monq.jobs.example.AsyncDummyJob", "--hold")
    readable = cli(env, "enqueue", JOB, "--hold")
    hidden_row = page.locator(f"tr[data-job='{secret['_id']}']")
    expect(hidden_row.locator(".name")).to_have_text("UnauthorizedJob", timeout=15_000)
    expect(hidden_row.locator("a")).to_have_count(0)
    expect(page.locator(f"tr[data-job='{readable['_id']}'] .name")).to_have_text(JOB)
    shot(page, "overview-restricted")
    page.goto(f"{base}/jobs/{readable['_id']}")
    expect(page.locator("#job-state")).to_have_text("pending (held)")
    expect(page.locator("#actions button")).to_have_count(0)
    shot(page, "job-restricted")
    page.goto(f"{base}/jobs/{secret['_id']}")
    expect(page.locator("#missing .message")).to_have_text(
        f"There is no job {secret['_id']} (or you may not see it).")
    page.goto(base + "/users")
    expect(page.locator("#error-message")).to_have_text(
        "403: permission denied: api://monq.api.roles")


def test_pages_send_a_strict_policy_and_writes_by_cookie_need_the_xsrf_token(
        server: tuple[str, dict[str, str]]) -> None:
    import urllib.error
    import urllib.request

    base, _ = server
    with urllib.request.urlopen(base + "/login", timeout=10) as reply:
        policy = reply.headers["Content-Security-Policy"]
        html = reply.read().decode()
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "<script>" not in html and " style=" not in html
    token = api_call(base, "POST", "/login", body={
        "username": "admin", "password": ADMIN_PASSWORD})["data"]["token"]
    forged = urllib.request.Request(base + "/api/v1/logout", method="POST", data=b"",
                                    headers={"Cookie": f"monq_token={token}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(forged, timeout=10)
    assert refused.value.code == 403
    assert api_call(base, "GET", "/profile", token)["data"]["name"] == "admin"  # not revoked
