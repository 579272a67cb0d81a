"""The pages over HTTP: who may open each (every role, no login), a rep's and a manager's scope, the CSRF
token on every form post, 4xx with a message on bad filters, the languages, and the workspace's actions
(validation messages at their lines, simulate, publish with a note). Temporal is offline here (its answers
are 503); tests/test_pages_browser.py runs the pages against a real one."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, insert

from api.main import create_app
from api.routers.pages_kpi import sla_view
from rules.access import Role
from settings import ROOT
from store.models import FollowUpRow, ScoreChangeRow, StageChangeRow, Touchpoint
from tests.access_fixtures import ADMIN, LEADS, NOW, Api, make_key, seed_store
from tests.test_robustness import offline_settings

PASSWORD = "a long enough passphrase"
LEAD_A, LEAD_B, LEAD_C = (lead[0] for lead in LEADS)  # owned by rep-aiko, rep-ben (inside-sales), rep-yui (japan)
BROWSER = {"accept": "text/html"}


def seed_pages(url: str) -> None:
    """Beyond access_fixtures' overdue follow-ups: one due soon, one touched late, and lead A's score history,
    an event and a stage change."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(FollowUpRow).values(
                key="fu-soon",
                lead_id=LEAD_B,
                rep_id="rep-ben",
                team_key="inside-sales",
                kind="first_touch",
                policy_id="p",
                status="pending",
                started_at=NOW,
                due_at=NOW + timedelta(hours=3),
                updated_at=NOW,
            )
        )
        # Lead C's earlier follow-up: breached, then touched (its status stays overdue, met_at is set).
        conn.execute(
            insert(FollowUpRow).values(
                key="fu-late",
                lead_id=LEAD_C,
                rep_id="rep-yui",
                team_key="japan",
                kind="first_touch",
                policy_id="p",
                status="overdue",
                started_at=NOW - timedelta(days=3),
                due_at=NOW - timedelta(days=2),
                met_at=NOW - timedelta(days=1),
                updated_at=NOW,
            )
        )
        conn.execute(
            insert(Touchpoint).values(
                event_id="ev-pricing",
                lead_id=LEAD_A,
                type="page_view",
                url="https://example.com/pricing",
                name=None,
                properties={},
                occurred_at=NOW - timedelta(days=1),
                received_at=NOW - timedelta(days=1),
            )
        )
        conn.execute(
            insert(ScoreChangeRow).values(
                lead_id=LEAD_A,
                seq=1,
                at=NOW - timedelta(days=1),
                points=30,
                score_after=30,
                rule_id="pricing_page",
                reason="visited the pricing page",
                event_id="ev-pricing",
            )
        )
        conn.execute(
            insert(StageChangeRow).values(
                lead_id=LEAD_A,
                seq=1,
                at=NOW - timedelta(days=1),
                from_stage="mql",
                to_stage="sql",
                reason="score >= 50",
            )
        )
    engine.dispose()  # fmt: skip


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = offline_settings(tmp_path_factory.mktemp("pages"), session_cookie_secure=False)
    seed_store(settings.resolved_database_url())
    seed_pages(settings.resolved_database_url())
    with TestClient(create_app(settings), raise_server_exceptions=False, follow_redirects=False) as client:
        created = {role: make_key(client, role) for role in Role}
        for name, body in {
            "mina": {"role": "manager", "teams": ["inside-sales"]},
            "aiko": {"role": "rep", "rep_id": "rep-aiko"},
            "mari": {"role": "marketer"},
        }.items():
            assert client.put(f"/v1/admin/users/{name}", json={**body, "password": PASSWORD}, headers=ADMIN).is_success
        yield Api(client, {r: c["key"] for r, c in created.items()}, {r: c["id"] for r, c in created.items()})


def as_role(api: Api, role: Role) -> tuple[str, str]:
    return ("script", api.keys[role])


def sign_in(client: TestClient, username: str) -> None:
    client.cookies.clear()
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    answer = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 303, answer.text


def page_token(text: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', text).group(1)  # type: ignore[union-attr]


OPENS = {
    "/queue": {Role.rep, Role.manager, Role.admin},
    "/leads?q=example": {Role.rep, Role.manager, Role.marketer, Role.admin},
    f"/leads/{LEAD_A}": {Role.rep, Role.manager, Role.marketer, Role.admin},
    "/kpi": {Role.manager, Role.marketer, Role.admin},
    "/workspace": {Role.marketer, Role.admin},
}


@pytest.mark.parametrize("path", list(OPENS))
def test_every_page_admits_exactly_its_roles(api: Api, path: str) -> None:
    api.client.cookies.clear()
    assert api.client.get(path).status_code == 401
    assert api.client.get(path, headers=BROWSER).headers["location"].startswith("/login?next=")
    for role in Role:
        answer = api.client.get(path, auth=as_role(api, role))
        expected = 200 if role in OPENS[path] else 403
        assert answer.status_code == expected, (role, answer.text[:300])
        if expected == 200:
            assert "text/html" in answer.headers["content-type"]


def test_a_rep_sees_their_own_queue_and_leads_a_manager_their_teams(api: Api) -> None:
    rep = api.client.get("/queue", auth=as_role(api, Role.rep)).text
    assert LEAD_A in rep and LEAD_B not in rep and LEAD_C not in rep
    manager = api.client.get("/queue", auth=as_role(api, Role.manager)).text
    overdue = manager.split('id="overdue"')[1].split("</table>")[0]
    due_soon = manager.split('id="due_soon"')[1].split("</table>")[0]
    assert LEAD_A in overdue and LEAD_B in overdue and LEAD_C not in manager and LEAD_B in due_soon
    assert api.client.get(f"/leads/{LEAD_B}", auth=as_role(api, Role.rep)).status_code == 403
    assert api.client.get(f"/leads/{LEAD_C}", auth=as_role(api, Role.manager)).status_code == 403
    found = api.client.get("/leads?q=example", auth=as_role(api, Role.rep)).text
    assert LEAD_A in found and LEAD_B not in found
    # Admin sees every team; the counts by team and rep cover them all.
    counts = api.client.get("/queue", auth=as_role(api, Role.admin)).text.split('id="counts"')[1]
    assert "rep-yui" in counts and "japan" in counts


def test_a_follow_up_touched_late_leaves_the_overdue_list_and_is_counted_apart(api: Api) -> None:
    page = api.client.get("/queue?team=japan", auth=as_role(api, Role.admin)).text
    overdue = page.split('id="overdue"')[1].split("</table>")[0]
    assert overdue.count(f'data-lead="{LEAD_C}"') == 1  # its open follow-up, not the one touched late
    assert re.search(r'id="total-overdue"><span>[^<]*</span><b>1</b>', page)
    assert re.search(r'id="total-touched-late"[^>]*><span>[^<]*</span><b>1</b>', page)


def test_queue_filters_and_sorting(api: Api) -> None:
    admin = as_role(api, Role.admin)
    japan = api.client.get("/queue?team=japan", auth=admin).text
    assert LEAD_C in japan and LEAD_A not in japan
    only_soon = api.client.get("/queue?show=due_soon", auth=admin).text
    assert 'id="overdue"' not in only_soon and LEAD_B in only_soon
    by_company = api.client.get("/queue?show=overdue&sort=company&order=desc", auth=admin).text
    assert by_company.index(LEAD_C) < by_company.index(LEAD_B) < by_company.index(LEAD_A)  # Co rep-yui first
    assert "sort=company&amp;order=asc" in by_company  # the column link turns the order round


@pytest.mark.parametrize(
    "path",
    [
        "/queue?sort=bogus",
        "/queue?order=sideways",
        "/queue?min_score=lots",
        "/queue?due_within_hours=0",
        "/queue?team=" + "x" * 80,
        "/queue?grade=<b>",
        "/kpi?from=2026-13-01",
        "/kpi?from=2026-03-01&to=2026-01-01",
        "/kpi?from=1800-01-01",
        "/kpi?team=no%20spaces",
        "/leads?q=" + "x" * 300,
        "/leads/not-a-lead-id",
        "/workspace?diff_from=0",
    ],
)
def test_bad_filters_are_4xx_with_a_message(api: Api, path: str) -> None:
    answer = api.client.get(path, auth=as_role(api, Role.admin))
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert "detail" in answer.text or 'id="error"' in answer.text


def test_a_manager_cannot_read_another_teams_kpis_and_unknown_versions_are_404(api: Api) -> None:
    refused = api.client.get("/kpi?team=japan", auth=as_role(api, Role.manager))
    assert refused.status_code == 403 and "inside-sales" in refused.text
    missing = api.client.get("/workspace?diff_from=98&diff_to=99", auth=as_role(api, Role.admin))
    assert missing.status_code == 404 and "no published version 98" in missing.text


def test_kpi_page_draws_its_charts_inline(api: Api) -> None:
    page = api.client.get("/kpi", auth=as_role(api, Role.admin)).text
    for chart in ("funnel-chart", "stage-time-chart", "sla-chart", "sources-chart", "trend-new-leads"):
        assert f'<svg id="{chart}"' in page
    assert "<script" not in page and "http://" not in page.split("<main>")[1]  # no library, nothing fetched
    sla = page.split('id="sla"')[1].split("</table>")[0]
    assert "rep-aiko" in sla and "rep-yui" in sla
    assert "rep-yui" not in api.client.get("/kpi", auth=as_role(api, Role.manager)).text.split('id="sla"')[1]


def test_the_lead_page_explains_the_score_and_degrades_without_temporal(api: Api) -> None:
    page = api.client.get(f"/leads/{LEAD_A}", auth=as_role(api, Role.rep)).text
    explained = page.split('id="score-explained"')[1].split("</table>")[0]
    assert "pricing_page" in explained and "visited the pricing page" in explained and "+30" in explained
    assert "https://example.com/pricing" in explained  # the event that caused it
    timeline = page.split('id="timeline"')[1]
    assert "mql → sql" in timeline and "sla.started" in timeline
    assert 'id="live-unavailable"' in page and 'id="touch-form"' in page
    marketer = api.client.get(f"/leads/{LEAD_A}", auth=as_role(api, Role.marketer)).text
    assert 'id="touch-form"' not in marketer  # actions by role
    assert api.client.get(f"/leads/lead-{'f' * 32}", auth=as_role(api, Role.admin)).status_code == 404


def test_pages_speak_japanese_when_asked(api: Api) -> None:
    auth = as_role(api, Role.admin)
    api.client.cookies.clear()
    assert "期限超過" in api.client.get("/queue", auth=auth, headers={"accept-language": "ja,en;q=0.5"}).text
    chosen = api.client.get("/queue?lang=ja", auth=auth)
    assert "期限超過" in chosen.text and "leadflow_lang=ja" in chosen.headers["set-cookie"]
    assert "ファネル" in api.client.get("/kpi", auth=auth).text  # the cookie remembers the choice
    assert "Funnel" in api.client.get("/kpi?lang=en", auth=auth).text
    api.client.cookies.clear()


def test_every_form_post_needs_the_sessions_csrf_token(api: Api) -> None:
    client = api.client
    sign_in(client, "aiko")
    forged = client.post(f"/queue/{LEAD_A}/touch", data={"kind": "call", "csrf_token": "forged"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert client.post(f"/queue/{LEAD_A}/touch", data={"kind": "call"}).status_code == 403
    token = page_token(client.get("/queue", headers=BROWSER).text)
    bad_kind = client.post(f"/queue/{LEAD_A}/touch", data={"kind": "telepathy", "csrf_token": token})
    assert bad_kind.status_code == 422 and "call" in bad_kind.text
    other = client.post(f"/queue/{LEAD_B}/touch", data={"kind": "call", "csrf_token": token})
    assert other.status_code == 403  # another rep's lead
    # With the token and a lead in scope the touch goes to Temporal, which is offline here: 503, not 500.
    offline = client.post(f"/queue/{LEAD_A}/touch", data={"kind": "call", "csrf_token": token})
    assert offline.status_code == 503
    sign_in(client, "mari")
    assert client.post("/workspace", data={"action": "validate", "playbook": "x: 1"}).status_code == 403
    client.cookies.clear()


def test_a_rep_cannot_open_or_post_to_the_workspace(api: Api) -> None:
    sign_in(api.client, "aiko")
    assert api.client.get("/workspace", headers=BROWSER).status_code == 403
    token = page_token(api.client.get("/queue", headers=BROWSER).text)
    draft = (ROOT / "playbooks" / "default.yaml").read_text()
    refused = api.client.post("/workspace", data={"action": "publish", "playbook": draft, "note": "x",
                                                  "csrf_token": token})  # fmt: skip
    assert refused.status_code == 403
    api.client.cookies.clear()


def broken_draft() -> tuple[str, int]:
    """The default playbook with one scoring rule's condition broken; the line it is on."""
    lines = (ROOT / "playbooks" / "default.yaml").read_text().splitlines()
    number = next(i for i, line in enumerate(lines, 1) if line.strip().startswith("when:"))
    lines[number - 1] = lines[number - 1].split("when:")[0] + 'when: event.type == "download" and and'
    return "\n".join(lines) + "\n", number


def test_workspace_shows_each_problem_at_its_line_then_simulates_and_publishes(api: Api) -> None:
    client = api.client
    sign_in(client, "mari")
    page = client.get("/workspace", headers=BROWSER)
    token = page_token(page.text)
    draft, line = broken_draft()
    answer = client.post("/workspace", data={"action": "validate", "playbook": draft, "csrf_token": token})
    assert answer.status_code == 422
    at_line = answer.text.split(f'id="L{line}"')[1].split('<div class="l')[0]
    assert 'class="issue"' in at_line and f'data-line="{line}"' in at_line
    assert "and and" in answer.text  # the draft is kept as typed

    good = (ROOT / "playbooks" / "default.yaml").read_text()
    simulated = client.post(
        "/workspace",
        data={
            "action": "simulate",
            "playbook": good,
            "csrf_token": token,
            "scenario": (ROOT / "playbooks/examples/seed_story.yaml").read_text(),
        },
    )
    assert simulated.status_code == 200, simulated.text[:500]
    trace = simulated.text.split('id="trace"')[1]
    assert "pricing" in trace and "rep_new_lead" in simulated.text
    bad_sample = client.post("/workspace", data={"action": "simulate", "playbook": good, "csrf_token": token,
                                                 "scenario": "lead: {}"})  # fmt: skip
    assert bad_sample.status_code == 422 and "email" in bad_sample.text

    no_note = client.post("/workspace", data={"action": "publish", "playbook": good, "csrf_token": token})
    assert no_note.status_code == 422 and "note" in no_note.text
    published = client.post("/workspace", data={"action": "publish", "playbook": good, "note": "first cut",
                                                 "csrf_token": token})  # fmt: skip
    assert published.status_code == 200 and 'id="published">v1' in published.text
    assert "first cut" in published.text.split('id="history"')[1] and "mari" in published.text
    second = good.replace("half_life: 30d", "half_life: 45d") if "half_life: 30d" in good else good + "# v2\n"
    client.post("/workspace", data={"action": "publish", "playbook": second, "note": "v2", "csrf_token": token})
    diff = client.get("/workspace?diff_from=1&diff_to=2", headers=BROWSER).text.split('id="diff"')[1]
    assert '<span class="add">+' in diff and '<span class="del">-' in diff
    audit = client.get("/v1/audit?route=POST /workspace", headers=ADMIN).json()["items"]
    assert audit and audit[0]["actor_role"] == "marketer"  # page writes are in the audit log
    unknown = client.post("/workspace", data={"action": "explode", "playbook": good, "csrf_token": token})
    assert unknown.status_code == 422
    client.cookies.clear()


def test_backtest_from_the_workspace(api: Api) -> None:
    good = (ROOT / "playbooks" / "default.yaml").read_text()
    sign_in(api.client, "mari")
    token = page_token(api.client.get("/workspace", headers=BROWSER).text)
    answer = api.client.post("/workspace", data={"action": "backtest", "playbook": good, "days": "30",
                                                 "csrf_token": token})  # fmt: skip
    assert answer.status_code == 200 and 'id="backtest-summary"' in answer.text
    bad = api.client.post("/workspace", data={"action": "backtest", "playbook": good, "days": "-3",
                                              "csrf_token": token})  # fmt: skip
    assert bad.status_code == 422 and "days" in bad.text
    api.client.cookies.clear()


def sla_row(team: str, rep: str | None, met: int, breached: int, median: float | None) -> dict[str, object]:
    return {"team": team, "rep_id": rep, "met_on_time": met, "breached": breached, "response_median_hours": median}


def test_sla_cards_count_each_follow_up_once() -> None:
    rows = [
        sla_row("inside-sales", None, 3, 1, 2.0), sla_row("inside-sales", "rep-aiko", 3, 1, 2.0),
        sla_row("japan", None, 0, 2, None), sla_row("japan", "rep-yui", 0, 2, None),
        sla_row("(total)", None, 3, 3, 2.0),
    ]  # fmt: skip
    shown, everyone = sla_view(rows, None, None)
    assert (everyone["met"], everyone["breached"], everyone["median_hours"]) == (3, 3, 2.0)
    assert all(r["team"] != "(total)" for r in shown)
    shown, one_team = sla_view(rows, "japan", None)
    assert (one_team["met"], one_team["breached"], len(shown)) == (0, 2, 2)
    shown, manager = sla_view(rows, None, frozenset({"inside-sales", "japan"}))
    assert (manager["met"], manager["breached"], manager["median_hours"]) == (3, 3, None)  # medians don't add
    _, own = sla_view(rows, None, frozenset({"inside-sales"}))
    assert (own["met_rate"], own["median_hours"]) == (0.75, 2.0)


def test_a_session_opened_with_an_api_key_needs_the_csrf_token_too(api: Api) -> None:
    """The login takes an API key as the password (no user name); that session's cookie rides along on a
    forged cross-site form exactly like a user's, so its page posts need the token as well."""
    client = api.client
    client.cookies.clear()
    page = client.get("/login")
    answer = client.post("/login", data={"username": "", "password": api.keys[Role.rep],
                                         "csrf_token": page_token(page.text)})  # fmt: skip
    assert answer.status_code == 303
    forged = client.post(f"/queue/{LEAD_A}/touch", data={"kind": "call"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    client.cookies.clear()


def test_the_lead_page_shows_what_went_wrong_for_the_lead(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 6: a rule that raised, a projection that failed for good and a failed send are recorded on the
    lead; the people who open the lead page (reps, managers, marketers, not the API) see them with the reason."""
    from datetime import UTC, datetime

    from api.routers import pages_lead
    from rules.model import RuleError
    from store.models import EmailRow
    from workflows.payloads import LeadView

    when = datetime(2026, 3, 2, 9, tzinfo=UTC)
    view = LeadView(LEAD_A, True, "mql", 40, None, [], None, None, {}, [], {}, [], "v1", when, when,
                    rule_errors=[RuleError(1, when, "webinar_window", "count(days=1000000) is out of range", "ev-9")],
                    projection_error="2026-03-02T09:00:00+00:00: the snapshot cannot be stored")  # fmt: skip

    async def live(state: object, lead_id: str) -> LeadView:
        return view

    monkeypatch.setattr(pages_lead, "live_view", live)
    engine = create_engine(api.client.app.state.leadflow.settings.resolved_database_url())  # type: ignore[attr-defined]
    with engine.begin() as conn:
        failed = {"key": f"{LEAD_A}:nurture:9", "lead_id": LEAD_A, "kind": "nurture", "template": "welcome",
                  "to_addr": "x@example.com", "status": "failed", "attempts": 1, "created_at": when,
                  "error": "InvalidAddress: cannot send to it"}  # fmt: skip
        conn.execute(insert(EmailRow).values(**failed))
    page = api.client.get(f"/leads/{LEAD_A}", auth=as_role(api, Role.marketer)).text
    problems = page.split('id="lead-problems"')[1].split("</section>")[0]
    assert "webinar_window" in problems and "count(days=1000000) is out of range" in problems and "ev-9" in problems
    assert "the snapshot cannot be stored" in problems
    timeline = page.split('id="timeline"')[1]
    assert "welcome · failed · InvalidAddress: cannot send to it" in timeline
