"""What every page shares: the Jinja2 environment of templates/pages, the page language (English or Japanese:
``?lang=``, then the ``leadflow_lang`` cookie it sets, then Accept-Language), the labels in both, and the
numbers behind the inline SVG charts (the templates draw them: no chart library, no build step)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any, Literal

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from activities.rendering import when as mail_when
from api.roles import csrf_token, principal_of
from settings import ROOT

Lang = Literal["en", "ja"]
LANG_COOKIE = "leadflow_lang"
LANGS: tuple[Lang, ...] = ("en", "ja")

templates = Jinja2Templates(directory=ROOT / "templates" / "pages")

# One table per language; a template asks t("key"). A missing Japanese label falls back to English.
LABELS: dict[str, dict[Lang, str]] = {
    "queue": {"en": "Follow-up queue", "ja": "フォローアップ"},
    "leads": {"en": "Leads", "ja": "リード"},
    "kpi": {"en": "KPI dashboard", "ja": "KPIダッシュボード"},
    "workspace": {"en": "Playbook workspace", "ja": "プレイブック"},
    "sign_out": {"en": "Sign out", "ja": "ログアウト"},
    "overdue": {"en": "Overdue", "ja": "期限超過"},
    "due_soon": {"en": "Due soon", "ja": "期限間近"},
    "touched_late": {"en": "Touched late", "ja": "期限後に対応済み"},
    "touched_late_hint": {
        "en": "Breached, then touched: with the overdue ones, what Temporal lists as LeadSlaStatus = overdue",
        "ja": "期限超過後に対応済み。期限超過と合わせて Temporal の LeadSlaStatus = overdue の件数",
    },
    "lead": {"en": "Lead", "ja": "リード"},
    "company": {"en": "Company", "ja": "会社"},
    "score": {"en": "Score", "ja": "スコア"},
    "grade": {"en": "Grade", "ja": "グレード"},
    "source": {"en": "Source", "ja": "流入元"},
    "owner": {"en": "Owner", "ja": "担当者"},
    "team": {"en": "Team", "ja": "チーム"},
    "rep": {"en": "Rep", "ja": "担当者"},
    "due": {"en": "Due", "ja": "期限"},
    "late": {"en": "Late by", "ja": "超過時間"},
    "actions": {"en": "Actions", "ja": "操作"},
    "log_touch": {"en": "Log touch", "ja": "対応を記録"},
    "awaiting_acceptance": {"en": "Awaiting acceptance", "ja": "受け入れ待ち"},
    "accept": {"en": "Accept", "ja": "受け入れる"},
    "reject": {"en": "Reject", "ja": "差し戻す"},
    "accepted": {"en": "Accepted", "ja": "受け入れ済み"},
    "rejected": {"en": "Rejected", "ja": "差し戻し済み"},
    "answer_by": {"en": "Answer by", "ja": "回答期限"},
    "filter": {"en": "Filter", "ja": "絞り込み"},
    "all": {"en": "all", "ja": "すべて"},
    "counts": {"en": "Counts by team and rep", "ja": "チーム・担当者別件数"},
    "nothing": {"en": "Nothing here.", "ja": "該当なし"},
    "search": {"en": "Search", "ja": "検索"},
    "search_hint": {"en": "email, company or lead id", "ja": "メール・会社名・リードID"},
    "timeline": {"en": "Timeline", "ja": "タイムライン"},
    "score_explained": {"en": "Why this score", "ja": "スコアの内訳"},
    "rule": {"en": "Rule", "ja": "ルール"},
    "event": {"en": "Event", "ja": "イベント"},
    "points": {"en": "Points", "ja": "点数"},
    "after": {"en": "Score after", "ja": "変更後"},
    "grade_reasons": {"en": "Grade reasons", "ja": "グレードの理由"},
    "lead_problems": {"en": "What went wrong for this lead", "ja": "このリードで発生した問題"},
    "rule_errors": {
        "en": "Rules that failed for this lead (skipped; the lead moved on): fix the rule in the playbook",
        "ja": "このリードで失敗したルール（スキップ済み、リードは処理継続）：プレイブックのルールを修正してください",
    },
    "projection_error": {
        "en": "The store missed a change of this lead (the live state above is current)",
        "ja": "ストアへの反映に失敗した変更があります（上のライブ状態が最新です）",
    },
    "journeys": {"en": "Journeys", "ja": "ジャーニー"},
    "waits_for": {"en": "Waits for", "ja": "次の待ち"},
    "consent": {"en": "Consent", "ja": "同意"},
    "stage": {"en": "Stage", "ja": "ステージ"},
    "status": {"en": "Status", "ja": "状態"},
    "when": {"en": "When", "ja": "日時"},
    "what": {"en": "What", "ja": "内容"},
    "who": {"en": "Who", "ja": "実行者"},
    "live_unavailable": {
        "en": "The live state is unavailable right now (Temporal did not answer); the store's copy is shown.",
        "ja": "現在ライブ状態を取得できません（Temporal 未応答）。ストアの内容を表示しています。",
    },
    "funnel": {"en": "Funnel", "ja": "ファネル"},
    "conversion": {"en": "Conversion", "ja": "転換率"},
    "time_in_stage": {"en": "Median hours in stage", "ja": "ステージ滞在（中央値・時間）"},
    "sla": {"en": "SLA performance", "ja": "SLA達成状況"},
    "met_rate": {"en": "Met", "ja": "達成率"},
    "breached_rate": {"en": "Breached", "ja": "違反率"},
    "median_first_touch": {"en": "Median hours to first touch", "ja": "初回対応までの中央値（時間）"},
    "sources": {"en": "Sources", "ja": "流入元"},
    "volume": {"en": "Leads", "ja": "件数"},
    "cost": {"en": "Cost", "ja": "費用"},
    "cpl": {"en": "Cost per lead", "ja": "リード単価"},
    "attributed": {"en": "Attributed conversions", "ja": "貢献コンバージョン"},
    "sends": {"en": "Sends", "ja": "送信"},
    "opens": {"en": "Opens", "ja": "開封"},
    "clicks": {"en": "Clicks", "ja": "クリック"},
    "unsubscribes": {"en": "Unsubscribes", "ja": "配信停止"},
    "exits": {"en": "Exits", "ja": "離脱"},
    "exits_unknown": {
        "en": "Journey exits are kept in each lead's workflow, not yet in the store",
        "ja": "ジャーニーの離脱は各リードのワークフロー内にのみあり、まだストアにはありません",
    },
    "whole_team": {"en": "(whole team)", "ja": "（チーム全体）"},
    "trends": {"en": "Trends by week", "ja": "週次推移"},
    "new_leads": {"en": "New leads", "ja": "新規リード"},
    "qualified": {"en": "Qualified", "ja": "有望化"},
    "touches": {"en": "Touches", "ja": "対応"},
    "period_from": {"en": "From", "ja": "開始日"},
    "period_to": {"en": "To", "ja": "終了日"},
    "live_version": {"en": "Live version", "ja": "公開中のバージョン"},
    "history": {"en": "History", "ja": "履歴"},
    "diff": {"en": "Diff", "ja": "差分"},
    "draft": {"en": "Draft", "ja": "下書き"},
    "validate": {"en": "Validate", "ja": "検証"},
    "simulate": {"en": "Simulate", "ja": "シミュレーション"},
    "backtest": {"en": "Backtest", "ja": "バックテスト"},
    "publish": {"en": "Publish", "ja": "公開"},
    "note": {"en": "Note", "ja": "メモ"},
    "scenario": {"en": "Sample lead and events (YAML)", "ja": "サンプルのリードとイベント（YAML）"},
    "problems": {"en": "Problems", "ja": "問題点"},
    "valid": {"en": "The draft is valid.", "ja": "下書きは有効です。"},
    "trace": {"en": "Trace", "ja": "トレース"},
    "line": {"en": "line", "ja": "行"},
}


def page_lang(request: Request) -> Lang:
    asked = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE)
    if asked in LANGS:
        return asked  # type: ignore[return-value]
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGS:
            return code  # type: ignore[return-value]
    return "en"


def label(lang: Lang, key: str) -> str:
    entry = LABELS.get(key)
    if entry is None:
        return key
    return entry.get(lang) or entry["en"]


# One way to show a time (activities/rendering.py, the mail's too); the pages' columns say UTC in their heading.
when = partial(mail_when, suffix="")


def duration(seconds: float | int | None) -> str:
    """How late, as people say it: 2d 3h, 5h 10m, 12m."""
    if not seconds:
        return ""
    minutes = int(seconds) // 60
    days, hours, mins = minutes // 1440, minutes % 1440 // 60, minutes % 60
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {mins}m" if hours else f"{mins}m"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


templates.env.filters["when"] = when
templates.env.filters["duration"] = duration
templates.env.filters["percent"] = percent
templates.env.globals["csrf_token"] = csrf_token


def render(request: Request, name: str, context: Mapping[str, Any], status_code: int = 200) -> Response:
    """A page in the viewer's language; ``?lang=`` is remembered in a cookie (the user's setting)."""
    lang = page_lang(request)
    principal = principal_of(request)
    page = templates.TemplateResponse(
        request,
        name,
        {**context, "lang": lang, "t": lambda key: label(lang, key), "viewer": principal},
        status_code=status_code,
    )
    if request.query_params.get("lang") in LANGS:
        page.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, httponly=True, samesite="lax")
    return page


def bars(rows: Iterable[Mapping[str, Any]], key: str, value: str, *, width: float = 320.0) -> list[dict[str, Any]]:
    """Horizontal bar geometry for a chart: each row's label, value and bar length scaled to the largest."""
    items = [(str(row.get(key) if row.get(key) is not None else "–"), row.get(value) or 0) for row in rows]
    top = max((float(v) for _, v in items), default=0.0) or 1.0
    return [{"label": name, "value": v, "length": round(float(v) / top * width, 1)} for name, v in items]


def columns(series: Mapping[str, int], *, height: float = 120.0) -> list[dict[str, Any]]:
    """Vertical column geometry for a weekly trend: label, value and column height scaled to the largest."""
    top = max(series.values(), default=0) or 1
    return [{"label": k, "value": v, "height": round(v / top * height, 1)} for k, v in series.items()]


def page_error(request: Request, status_code: int, message: str) -> Response:
    """A refusal a person reads: the page frame with what to fix, at the given 4xx/5xx status."""
    return render(request, "error.html", {"message": message, "status": status_code}, status_code=status_code)
