"""The pages in a real headless Chromium (Debian's ``chromium`` package, driven by Playwright; never a
downloaded browser) against the dev server, a worker, the API and SQLite: a rep signs in, opens the queue,
logs a touch and sees the lead leave the overdue list; the queue's counts match Temporal's visibility
(``LeadSlaStatus``) for the same leads before and after; the lead page explains the score; a marketer edits a
draft with an error and sees the message at its line, then publishes; a rep cannot open the workspace. Each
page is screenshotted into the test's tmp_path (the paths are printed)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from settings import ROOT
from tests.test_integration import AUTH, SEED_EVENTS, dev_server, eventually, stack  # noqa: F401  (fixtures)
from tests.test_pages_http import broken_draft

pytestmark = pytest.mark.integration
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "a long enough passphrase"
USERS = {
    "mina": {"role": "manager", "teams": ["inside-sales"]},
    "aiko": {"role": "rep", "rep_id": "rep-aiko"},
    "mari": {"role": "marketer"},
}
BUDGET_SECONDS = 55  # the whole browser part, servers already up
playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is in the dev extra")


@pytest.fixture
def chromium() -> str:
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install -y chromium; .ci/run does)")
    return CHROMIUM


async def overdue_in_temporal(env: WorkflowEnvironment, lead_ids: list[str]) -> int:
    """Running lead workflows Temporal lists as overdue (a run closed by continue-as-new keeps its attributes)."""
    listed = ", ".join(f"'{lead_id}'" for lead_id in lead_ids)
    query = f"WorkflowId IN ({listed}) AND ExecutionStatus = 'Running' AND LeadSlaStatus = 'overdue'"
    return (await env.client.count_workflows(query)).count


async def until(check: Callable[[], Any], what: str, seconds: float = 20) -> Any:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0.2)


async def make_overdue_lead(http: httpx.AsyncClient, email: str, company: str) -> str:
    lead = {"email": email, "company": company, "title": "VP Marketing", "company_size": 500, "country": "us"}
    lead_id: str = (await http.post("/v1/leads", json=lead, headers=AUTH)).json()["lead_id"]
    await eventually(http, f"/v1/leads/{lead_id}", lambda view: view["exists"])
    assert (await http.post(f"/v1/leads/{lead_id}/events", json=SEED_EVENTS, headers=AUTH)).status_code == 202
    return lead_id


async def test_the_pages_in_headless_chromium(
    stack: httpx.AsyncClient,  # noqa: F811
    dev_server: WorkflowEnvironment,  # noqa: F811
    chromium: str,
    tmp_path: Path,
) -> None:
    http = stack
    base = str(http.base_url).rstrip("/")
    for name, body in USERS.items():
        assert (await http.put(f"/v1/admin/users/{name}", json={**body, "password": PASSWORD}, headers=AUTH)).is_success
    # Round robin in inside-sales: Acme goes to rep-aiko, Bo Corp to rep-ben; the fast SLA makes both overdue.
    acme = await make_overdue_lead(http, "ann.lee@example.com", "Acme")
    bo = await make_overdue_lead(http, "bo@example.org", "Bo Corp")
    overdue = await eventually(http, "/v1/followups?status=overdue", lambda b: len(b["items"]) == 2, tries=400)
    assert {f["lead_id"]: f["rep_id"] for f in overdue["items"]} == {acme: "rep-aiko", bo: "rep-ben"}
    await until(lambda: _equals(overdue_in_temporal(dev_server, [acme, bo]), 2), "Temporal lists both overdue")
    shots: list[Path] = []

    async with playwright_api.async_playwright() as driver, asyncio.timeout(BUDGET_SECONDS):
        browser = await driver.chromium.launch(executable_path=chromium, args=["--no-sandbox"])

        async def signed_in(username: str) -> Any:
            context = await browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
            context.set_default_timeout(10_000)
            page = await context.new_page()
            await page.goto(f"{base}/login?next=/queue")
            await page.fill("input[name=username]", username)
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_load_state()
            return page

        async def shot(page: Any, name: str) -> None:
            path = tmp_path / f"{name}.png"
            await page.screenshot(path=str(path), full_page=True)
            shots.append(path)

        async def overdue_total(page: Any) -> int:
            await page.goto(f"{base}/queue")
            return int(await page.inner_text("#total-overdue b"))

        # The manager's queue counts what Temporal's visibility counts for the same leads.
        manager = await signed_in("mina")
        assert await overdue_total(manager) == await overdue_in_temporal(dev_server, [acme, bo]) == 2
        await shot(manager, "queue-manager")

        # The rep logs a call from the queue; the lead leaves the overdue list.
        rep = await signed_in("aiko")
        assert rep.url.endswith("/queue")
        row = rep.locator(f'#overdue tr[data-lead="{acme}"]')
        assert "Acme" in await row.inner_text() and await rep.locator(f'tr[data-lead="{bo}"]').count() == 0
        await shot(rep, "queue-rep-before")
        await row.locator("select[name=kind]").select_option("call")
        await row.locator("input[name=note]").fill("discovery call booked")
        await row.locator("button.log-touch").click()
        await rep.wait_for_selector("#flash")

        async def gone() -> bool:
            await rep.reload()
            return await rep.locator(f'#overdue tr[data-lead="{acme}"]').count() == 0

        await until(gone, "the touched lead leaves the rep's overdue list")
        await shot(rep, "queue-rep-after")
        # A late touch leaves the breach on record (LeadSlaStatus stays overdue): the queue counts it apart.
        assert await overdue_total(manager) == 1
        touched_late = int(await manager.inner_text("#total-touched-late b"))
        assert touched_late == 1 and 1 + touched_late == await overdue_in_temporal(dev_server, [acme, bo])

        # The lead page explains the score, rule by rule with the event behind each change.
        await rep.goto(f"{base}/leads?q=acme")
        await rep.click(f'a[href="/leads/{acme}"]')
        explained = await rep.inner_text("#score-explained")
        assert "pricing_page" in explained and "whitepaper_download" in explained and "+15" in explained
        timeline = await rep.inner_text("#timeline")
        assert "touch.call" in timeline and "discovery call booked" in timeline
        await shot(rep, "lead")

        # The manager's KPI dashboard draws its charts inline (in Japanese here: the link's choice is kept).
        await manager.goto(f"{base}/kpi?lang=ja")
        assert await manager.locator("svg#funnel-chart rect").count() >= 3
        assert "ファネル" in await manager.inner_text("main")
        await shot(manager, "kpi-ja")

        # A marketer's draft with an error shows the message at its line; the fixed draft is published.
        marketer = await signed_in("mari")
        await marketer.goto(f"{base}/workspace")
        await shot(marketer, "workspace")
        draft, line = broken_draft()
        await marketer.fill("#draft", draft)
        await marketer.click("#do-validate")
        message = await marketer.inner_text(f'#draft-lines .issue[data-line="{line}"]')
        assert "scoring" in message
        assert await marketer.get_attribute(f"#L{line}", "class") == "l bad"
        await shot(marketer, "workspace-error")
        await marketer.fill("#draft", (ROOT / "playbooks" / "default.yaml").read_text())
        await marketer.fill("#note", "published from the browser test")
        await marketer.click("#do-publish")
        assert (await marketer.inner_text("#published")).startswith("v1")
        assert "published from the browser test" in await marketer.inner_text("#history")
        await shot(marketer, "workspace-published")

        # A rep's login cannot open the workspace.
        refused = await rep.goto(f"{base}/workspace")
        assert refused is not None and refused.status == 403
        assert "marketer" in await rep.content()
        await shot(rep, "workspace-refused-for-rep")
        await browser.close()

    for path in shots:
        print(f"screenshot: {path}")
    assert all(path.stat().st_size > 1000 for path in shots)


async def _equals(count: Any, expected: int) -> bool:
    return bool(await count == expected)
