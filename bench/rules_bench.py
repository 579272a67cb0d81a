"""Rule evaluation speed: leadflow's compiled rule language against plain Python and peer libraries.

A realistic 50-rule scoring set (page views by URL, downloads, email, webinars, forms, UTM, title regex,
company size ranges, country and industry lists, negative rules, None and missing fields) is written once
per engine and evaluated over the same 200 generated (lead, event) pairs. Every engine must fire exactly the
same rules on every pair as the plain Python version (the limit); the script checks that before timing and
exits non-zero if any engine disagrees.

    .venv/bin/python bench/rules_bench.py [--pairs 200] [--seconds 1.0]

Peer libraries come from the ``bench`` extra (``pip install -e '.[bench]'``); an engine whose library is
missing is reported as skipped. Figures: median of up to 5 timed batches per engine (about --seconds per
engine), one core.
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import functools
import gc
import os
import platform
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rules.expressions import RUNTIME, Vocabulary, compile_expression
from rules.sections import compile_section

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
PARAMS = "lead, event, score, grade, stage, now, history"


# ------------------------------------------------------------------ the rule set, once per engine


@dataclass(frozen=True)
class Rule:
    id: str
    points: int
    leadflow: str  # what a marketer writes in the playbook
    python: str  # a programmer's plain Python over the same dicts (names: PARAMS)
    simpleeval: str  # simpleeval, with leadflow's None-safe helpers registered as functions
    rule_engine: str  # rule-engine, item syntax lead["x"], regex_flags=IGNORECASE
    cel: str  # CEL, with a custom lower() (null -> ""), count() and variables lead/event/score/...


def _url_rule(rid: str, points: int, fragment: str) -> Rule:
    return Rule(
        rid,
        points,
        f'event.type == "page_view" and contains(event.url, "{fragment}")',
        f'event["type"] == "page_view" and "{fragment}" in (event["url"] or "").lower()',
        f'event.type == "page_view" and contains(event.url, "{fragment}")',
        f'event["type"] == "page_view" and "{fragment}" in event["url"].as_lower',
        f'event.type == "page_view" && lower(event.url).contains("{fragment}")',
    )


def _type_rule(rid: str, points: int, event_type: str) -> Rule:
    return Rule(
        rid,
        points,
        f'event.type == "{event_type}"',
        f'event["type"] == "{event_type}"',
        f'event.type == "{event_type}"',
        f'event["type"] == "{event_type}"',
        f'event.type == "{event_type}"',
    )


def _size_rule(rid: str, points: int, low: int | None, high: int | None) -> Rule:
    lf = " and ".join(
        ([f"lead.company_size >= {low}"] if low is not None else [])
        + ([f"lead.company_size < {high}"] if high is not None else [])
    )
    py_range = f"{low} <= n" if low is not None else "n"
    py_range += f" < {high}" if high is not None else ""
    return Rule(
        rid,
        points,
        lf,
        f'(n := lead["company_size"]) is not None and {py_range}',
        "lead.company_size is not None and " + lf,
        'lead["company_size"] != null and ' + lf.replace("lead.company_size", 'lead["company_size"]'),
        "lead.company_size != null && " + lf.replace(" and ", " && "),
    )


def _list_rule(rid: str, points: int, field: str, values: list[str]) -> Rule:
    low = [v.lower() for v in values]
    return Rule(
        rid,
        points,
        f"lead.{field} in {values!r}".replace("'", '"'),
        f'(lead["{field}"] or "").lower() in {tuple(low)!r}'.replace("'", '"'),
        f"lower(lead.{field}) in {low!r}".replace("'", '"'),
        f'lead["{field}"]&.as_lower in {low!r}'.replace("'", '"'),
        f"lower(lead.{field}) in {low!r}".replace("'", '"'),
    )


def _title_rule(rid: str, points: int, pattern: str) -> Rule:
    # pattern is the regex itself; each language needs its backslashes doubled inside a string literal
    lit = pattern.replace("\\", "\\\\")
    return Rule(
        rid,
        points,
        f'matches(lead.title, "{lit}")',
        f"RX[{pattern!r}].search(lead['title'] or '') is not None",
        f'matches(lead.title, "{lit}")',
        f'lead["title"] =~~ "{lit}"',
        f'lead.title != null && lead.title.matches("(?i){lit}")',
    )


SENIOR = r"\b(vp|vice president|director|head of|chief|ceo|cto|cmo|cio)\b"
RULES: list[Rule] = [
    _url_rule("pricing_page", 40, "/pricing"),
    _url_rule("demo_page", 30, "/demo"),
    Rule(
        "page_view",
        2,
        'event.type == "page_view" and not contains(event.url, "/pricing") and not contains(event.url, "/careers")',
        'event["type"] == "page_view" and "/pricing" not in (event["url"] or "").lower()'
        ' and "/careers" not in (event["url"] or "").lower()',
        'event.type == "page_view" and not contains(event.url, "/pricing") and not contains(event.url, "/careers")',
        'event["type"] == "page_view" and "/pricing" not in event["url"].as_lower'
        ' and "/careers" not in event["url"].as_lower',
        'event.type == "page_view" && !lower(event.url).contains("/pricing") && !lower(event.url).contains("/careers")',
    ),
    _url_rule("docs_page", 3, "/docs/"),
    Rule(
        "blog_post",
        1,
        'event.type == "page_view" and matches(event.url, "/blog/[a-z0-9-]+$")',
        "event['type'] == 'page_view' and RX['/blog/[a-z0-9-]+$'].search(event['url'] or '') is not None",
        'event.type == "page_view" and matches(event.url, "/blog/[a-z0-9-]+$")',
        'event["type"] == "page_view" and event["url"] =~~ "/blog/[a-z0-9-]+$"',
        'event.type == "page_view" && event.url.matches("(?i)/blog/[a-z0-9-]+$")',
    ),
    _url_rule("careers_page", -10, "/careers"),
    _url_rule("case_study", 8, "/customers/"),
    Rule(
        "integrations",
        6,
        'event.type == "page_view" and ends_with(event.url, "/integrations")',
        'event["type"] == "page_view" and (event["url"] or "").lower().endswith("/integrations")',
        'event.type == "page_view" and ends_with(event.url, "/integrations")',
        'event["type"] == "page_view" and event["url"] =~~ "/integrations$"',
        'event.type == "page_view" && lower(event.url).endsWith("/integrations")',
    ),
    Rule(
        "whitepaper",
        15,
        'event.type == "download" and contains(event.name, "whitepaper")',
        'event["type"] == "download" and "whitepaper" in (event["name"] or "").lower()',
        'event.type == "download" and contains(event.name, "whitepaper")',
        'event["type"] == "download" and "whitepaper" in event["name"].as_lower',
        'event.type == "download" && lower(event.name).contains("whitepaper")',
    ),
    Rule(
        "ebook",
        12,
        'event.type == "download" and matches(event.name, "e-?book")',
        "event['type'] == 'download' and RX['e-?book'].search(event['name'] or '') is not None",
        'event.type == "download" and matches(event.name, "e-?book")',
        'event["type"] == "download" and event["name"] =~~ "e-?book"',
        'event.type == "download" && event.name.matches("(?i)e-?book")',
    ),
    Rule(
        "roi_calculator",
        25,
        'event.type == "download" and event.name == "ROI Calculator"',
        'event["type"] == "download" and (event["name"] or "").lower() == "roi calculator"',
        'event.type == "download" and lower(event.name) == "roi calculator"',
        'event["type"] == "download" and event["name"].as_lower == "roi calculator"',
        'event.type == "download" && lower(event.name) == "roi calculator"',
    ),
    _type_rule("email_open", 1, "email_open"),
    _type_rule("email_click", 5, "email_click"),
    Rule(
        "newsletter_click",
        2,
        'event.type == "email_click" and contains(event.properties["campaign"], "newsletter")',
        'event["type"] == "email_click" and "newsletter" in (event["properties"].get("campaign") or "").lower()',
        'event.type == "email_click" and contains(event.properties.get("campaign"), "newsletter")',
        'event["type"] == "email_click" and "campaign" in event["properties"]'
        ' and "newsletter" in event["properties"]["campaign"].as_lower',
        'event.type == "email_click" && has(event.properties.campaign)'
        ' && lower(event.properties.campaign).contains("newsletter")',
    ),
    _type_rule("webinar_registered", 10, "webinar_registered"),
    Rule(
        "webinar_attended",
        20,
        'event.type == "webinar_attended" and event.properties["minutes"] >= 30',
        'event["type"] == "webinar_attended" and (m := event["properties"].get("minutes")) is not None and m >= 30',
        'event.type == "webinar_attended" and event.properties.get("minutes") is not None'
        ' and event.properties.get("minutes") >= 30',
        'event["type"] == "webinar_attended" and "minutes" in event["properties"]'
        ' and event["properties"]["minutes"] >= 30',
        'event.type == "webinar_attended" && has(event.properties.minutes) && event.properties.minutes >= 30',
    ),
    Rule(
        "webinar_no_show",
        -5,
        'event.type == "webinar_attended" and event.properties["minutes"] < 5',
        'event["type"] == "webinar_attended" and (m := event["properties"].get("minutes")) is not None and m < 5',
        'event.type == "webinar_attended" and event.properties.get("minutes") is not None'
        ' and event.properties.get("minutes") < 5',
        'event["type"] == "webinar_attended" and "minutes" in event["properties"]'
        ' and event["properties"]["minutes"] < 5',
        'event.type == "webinar_attended" && has(event.properties.minutes) && event.properties.minutes < 5',
    ),
    Rule(
        "demo_request",
        50,
        'event.type == "form_submit" and contains(event.name, "demo")',
        'event["type"] == "form_submit" and "demo" in (event["name"] or "").lower()',
        'event.type == "form_submit" and contains(event.name, "demo")',
        'event["type"] == "form_submit" and "demo" in event["name"].as_lower',
        'event.type == "form_submit" && lower(event.name).contains("demo")',
    ),
    Rule(
        "contact_sales",
        45,
        'event.type == "form_submit" and event.name in ["Contact Sales", "Talk to Sales"]',
        'event["type"] == "form_submit" and (event["name"] or "").lower() in ("contact sales", "talk to sales")',
        'event.type == "form_submit" and lower(event.name) in ["contact sales", "talk to sales"]',
        'event["type"] == "form_submit" and event["name"].as_lower in ["contact sales", "talk to sales"]',
        'event.type == "form_submit" && lower(event.name) in ["contact sales", "talk to sales"]',
    ),
    Rule(
        "free_trial",
        35,
        'event.type == "form_submit" and event.name == "Free Trial"',
        'event["type"] == "form_submit" and (event["name"] or "").lower() == "free trial"',
        'event.type == "form_submit" and lower(event.name) == "free trial"',
        'event["type"] == "form_submit" and event["name"].as_lower == "free trial"',
        'event.type == "form_submit" && lower(event.name) == "free trial"',
    ),
    _type_rule("unsubscribe", -20, "unsubscribe"),
    _type_rule("email_bounce", -15, "email_bounce"),
    Rule(
        "linkedin_visit",
        3,
        'event.type == "page_view" and lead.utm_source == "linkedin"',
        'event["type"] == "page_view" and (lead["utm_source"] or "").lower() == "linkedin"',
        'event.type == "page_view" and lower(lead.utm_source) == "linkedin"',
        'event["type"] == "page_view" and lead["utm_source"]&.as_lower == "linkedin"',
        'event.type == "page_view" && lower(lead.utm_source) == "linkedin"',
    ),
    Rule(
        "paid_form",
        10,
        'lead.utm_medium in ["cpc", "paid_social"] and event.type == "form_submit"',
        '(lead["utm_medium"] or "").lower() in ("cpc", "paid_social") and event["type"] == "form_submit"',
        'lower(lead.utm_medium) in ["cpc", "paid_social"] and event.type == "form_submit"',
        'lead["utm_medium"]&.as_lower in ["cpc", "paid_social"] and event["type"] == "form_submit"',
        'lower(lead.utm_medium) in ["cpc", "paid_social"] && event.type == "form_submit"',
    ),
    Rule(
        "q3_campaign",
        5,
        'event.type == "form_submit" and starts_with(lead.utm_campaign, "2026-q3")',
        'event["type"] == "form_submit" and (lead["utm_campaign"] or "").lower().startswith("2026-q3")',
        'event.type == "form_submit" and starts_with(lead.utm_campaign, "2026-q3")',
        'event["type"] == "form_submit" and lead["utm_campaign"] =~ "2026-q3"',
        'event.type == "form_submit" && lower(lead.utm_campaign).startsWith("2026-q3")',
    ),
    Rule(
        "partner_form",
        15,
        'lead.source == "partner" and event.type == "form_submit"',
        '(lead["source"] or "").lower() == "partner" and event["type"] == "form_submit"',
        'lower(lead.source) == "partner" and event.type == "form_submit"',
        'lead["source"]&.as_lower == "partner" and event["type"] == "form_submit"',
        'lower(lead.source) == "partner" && event.type == "form_submit"',
    ),
    Rule(
        "repeat_visitor",
        10,
        'event.type == "page_view" and count("page_view", days=7) >= 5',
        'event["type"] == "page_view" and history("page_view", 7.0, now) >= 5',
        'event.type == "page_view" and count("page_view", days=7) >= 5',
        'event["type"] == "page_view" and count("page_view", 7) >= 5',
        'event.type == "page_view" && count("page_view", 7) >= 5',
    ),
    Rule(
        "pricing_binge",
        15,
        'contains(event.url, "/pricing") and count("page_view", days=1) >= 3',
        '"/pricing" in (event["url"] or "").lower() and history("page_view", 1.0, now) >= 3',
        'contains(event.url, "/pricing") and count("page_view", days=1) >= 3',
        'event["url"] != null and "/pricing" in event["url"].as_lower and count("page_view", 1) >= 3',
        'lower(event.url).contains("/pricing") && count("page_view", 1) >= 3',
    ),
    Rule(
        "new_lead_click",
        5,
        'event.type == "email_click" and days_since(lead.created_at) <= 14',
        'event["type"] == "email_click" and (d := days_since(now, lead["created_at"])) is not None and d <= 14',
        'event.type == "email_click" and days_since(lead.created_at) is not None and days_since(lead.created_at) <= 14',
        'event["type"] == "email_click" and lead["created_at"] != null'
        ' and now - $parse_datetime(lead["created_at"]) <= t"P14D"',
        'event.type == "email_click" && lead.created_at != null'
        ' && now - timestamp(lead.created_at) <= duration("336h")',
    ),
    Rule(
        "stale_lead_returns",
        8,
        'event.type == "page_view" and days_since(lead.created_at) > 180',
        'event["type"] == "page_view" and (d := days_since(now, lead["created_at"])) is not None and d > 180',
        'event.type == "page_view" and days_since(lead.created_at) is not None and days_since(lead.created_at) > 180',
        'event["type"] == "page_view" and lead["created_at"] != null'
        ' and now - $parse_datetime(lead["created_at"]) > t"P180D"',
        'event.type == "page_view" && lead.created_at != null && now - timestamp(lead.created_at) > duration("4320h")',
    ),
    Rule(
        "mobile_form",
        4,
        'event.type == "form_submit" and event.properties["channel"] == "mobile"',
        'event["type"] == "form_submit" and (event["properties"].get("channel") or "").lower() == "mobile"',
        'event.type == "form_submit" and lower(event.properties.get("channel")) == "mobile"',
        'event["type"] == "form_submit" and event["properties"]&["channel"]&.as_lower == "mobile"',
        'event.type == "form_submit" && has(event.properties.channel) && lower(event.properties.channel) == "mobile"',
    ),
    _title_rule("senior_title", 20, SENIOR),
    _title_rule("manager_title", 10, r"manager|team lead"),
    _title_rule("student_title", -15, r"\b(student|intern)\b"),
    _size_rule("enterprise", 20, 1000, None),
    _size_rule("mid_market", 15, 200, 1000),
    _size_rule("small_business", 8, 20, 200),
    _size_rule("micro_company", -10, None, 5),
    _list_rule("target_industry", 15, "industry", ["software", "saas", "manufacturing", "finance"]),
    _list_rule("excluded_industry", -10, "industry", ["education", "government"]),
    _list_rule("core_country", 10, "country", ["JP", "US", "GB", "DE", "SG"]),
    _list_rule("embargoed_country", -100, "country", ["KP", "IR", "CU", "SY"]),
    Rule(
        "japan_apac",
        5,
        'lead.region == "APAC" and lead.language == "ja"',
        '(lead["region"] or "").lower() == "apac" and (lead["language"] or "").lower() == "ja"',
        'lower(lead.region) == "apac" and lower(lead.language) == "ja"',
        'lead["region"]&.as_lower == "apac" and lead["language"]&.as_lower == "ja"',
        'lower(lead.region) == "apac" && lower(lead.language) == "ja"',
    ),
    Rule(
        "free_mail",
        -10,
        'matches(lead.email, "@(gmail|yahoo|hotmail|outlook)\\\\.")',
        "RX[r'@(gmail|yahoo|hotmail|outlook)\\.'].search(lead['email'] or '') is not None",
        'matches(lead.email, "@(gmail|yahoo|hotmail|outlook)\\\\.")',
        'lead["email"] =~~ "@(gmail|yahoo|hotmail|outlook)\\\\."',
        'lead.email != null && lead.email.matches("(?i)@(gmail|yahoo|hotmail|outlook)\\\\.")',
    ),
    Rule(
        "competitor",
        -50,
        'ends_with(lead.email, "@rivalcorp.com")',
        '(lead["email"] or "").lower().endswith("@rivalcorp.com")',
        'ends_with(lead.email, "@rivalcorp.com")',
        'lead["email"] =~~ "@rivalcorp\\\\.com$"',
        'lower(lead.email).endsWith("@rivalcorp.com")',
    ),
    Rule(
        "budget",
        15,
        "lead.budget >= 50000",
        '(b := lead["budget"]) is not None and b >= 50000',
        "lead.budget is not None and lead.budget >= 50000",
        'lead["budget"] != null and lead["budget"] >= 50000',
        "lead.budget != null && lead.budget >= 50000",
    ),
    _list_rule("near_timeline", 10, "timeline", ["this quarter", "next quarter"]),
    Rule(
        "big_revenue",
        10,
        'lead.annual_revenue > 10000000 and lead.industry != "government"',
        '(r := lead["annual_revenue"]) is not None and r > 10000000'
        ' and (lead["industry"] or "").lower() != "government"',
        'lead.annual_revenue is not None and lead.annual_revenue > 10000000 and lower(lead.industry) != "government"',
        'lead["annual_revenue"] != null and lead["annual_revenue"] > 10000000'
        ' and lead["industry"]&.as_lower != "government"',
        'lead.annual_revenue != null && lead.annual_revenue > 10000000 && lower(lead.industry) != "government"',
    ),
    Rule(
        "it_function",
        5,
        'lead.job_function == "IT"',  # a playbook's own field (fields: [job_function]); missing on most leads
        '(lead.get("job_function") or "").lower() == "it"',
        'lower(lead.get("job_function")) == "it"',
        'lead&["job_function"]&.as_lower == "it"',
        'has(lead.job_function) && lower(lead.job_function) == "it"',
    ),
    Rule(
        "sales_ready",
        5,
        'score >= 50 and grade in ["A", "B"] and stage == "mql"',
        'score >= 50 and grade in ("A", "B") and stage == "mql"',
        'score >= 50 and grade in ["A", "B"] and stage == "mql"',
        'score >= 50 and grade in ["A", "B"] and stage == "mql"',
        'score >= 50.0 && grade in ["A", "B"] && stage == "mql"',
    ),
]
assert len(RULES) == 50 and len({r.id for r in RULES}) == 50


# ------------------------------------------------------------------ data: 200 (lead, event) pairs


def make_history(times: dict[str, list[dt.datetime]]) -> Callable[[str, float | None, dt.datetime], int]:
    """The same `count` callable rules/engine.py builds from a lead's event times."""

    def count(event_type: str, days: float | None, now: dt.datetime) -> int:
        seen = times.get(event_type, [])
        if days is None:
            return len(seen)
        return len(seen) - bisect.bisect_left(seen, now - dt.timedelta(days=days))

    return count


Pair = tuple[dict[str, Any], dict[str, Any], float, str, str, dt.datetime, Callable[..., int]]


def make_pairs(n: int, seed: int = 20261122) -> list[Pair]:
    rnd = random.Random(seed)
    pick = rnd.choice
    titles = [
        "VP of Marketing",
        "Head of Growth",
        "Marketing Manager",
        "Student",
        "Software Engineer",
        "CTO",
        "Intern",
        "Director, IT",
        None,
        "Team Lead, Sales Ops",
        "Chief Revenue Officer",
        "Analyst",
        "vice president sales",
        "Account Executive",
        "Internal Audit Lead",
        "HEAD OF DATA",
    ]
    domains = [
        "gmail.com",
        "acme.co.jp",
        "RivalCorp.com",
        "yahoo.co.uk",
        "globex.com",
        "initech.de",
        "outlook.com",
        "hooli.io",
    ]
    urls = [
        "https://example.com/pricing",
        "https://example.com/Pricing?plan=pro",
        "https://example.com/demo",
        "https://example.com/docs/api/leads",
        "https://example.com/blog/lead-scoring-101",
        "https://example.com/blog/",
        "https://example.com/careers/backend-engineer",
        "https://example.com/customers/acme",
        "https://example.com/Integrations",
        "https://example.com/",
        "https://example.com/product/features",
        "https://example.com/jp/pricing",
        "https://example.com/about",
    ]
    downloads = [
        "Whitepaper: Lead Scoring 101",
        "eBook - Nurture Playbook",
        "E-book: ABM",
        "ROI Calculator",
        "roi calculator",
        "Checklist: SLA",
        "WHITEPAPER - Routing",
    ]
    forms = [
        "Demo Request",
        "Contact Sales",
        "talk to sales",
        "Free Trial",
        "Newsletter Signup",
        "Book a DEMO",
        "Event Registration",
    ]
    campaigns = ["2026-10 Newsletter", "Product launch", "newsletter-weekly", "Webinar follow-up"]
    event_types = (
        ["page_view"] * 10
        + ["email_open"] * 3
        + ["email_click"] * 3
        + ["download"] * 3
        + ["form_submit"] * 3
        + ["webinar_registered", "webinar_attended", "webinar_attended", "unsubscribe", "email_bounce"]
    )
    pairs: list[Pair] = []
    for i in range(n):
        email = None if rnd.random() < 0.08 else f"lead{i}@{pick(domains)}"
        created = NOW - dt.timedelta(days=rnd.uniform(0, 400))
        lead: dict[str, Any] = {
            "email": email,
            "first_name": f"First{i}",
            "last_name": f"Last{i}",
            "company": f"Company {i % 37}",
            "title": pick(titles),
            "company_size": pick([None, 1, 3, 12, 20, 45, 150, 199, 200, 640, 999, 1000, 5200]),
            "industry": pick(
                ["Software", "saas", "Manufacturing", "finance", "education", "Government", "retail", None]
            ),
            "country": pick(["JP", "jp", "US", "us", "GB", "DE", "SG", "FR", "BR", "IR", "kp", None]),
            "region": pick(["APAC", "apac", "EMEA", "AMER", None]),
            "language": pick(["ja", "en", "JA", "de", None]),
            "source": pick(["partner", "Partner", "organic", "paid", "event", None]),
            "utm_source": pick(["LinkedIn", "linkedin", "google", "newsletter", None]),
            "utm_medium": pick(["cpc", "CPC", "paid_social", "email", "organic", None]),
            "utm_campaign": pick(["2026-Q3-launch", "2026-q3-webinar", "2026-q4-abm", "brand", None]),
            "budget": pick([None, 0.0, 12000.0, 49999.99, 50000.0, 250000.0]),
            "timeline": pick(["this quarter", "Next Quarter", "next year", "unknown", None]),
            "annual_revenue": pick([None, 500_000, 10_000_000, 10_000_001, 250_000_000]),
            "created_at": None if rnd.random() < 0.1 else created.isoformat(),
        }
        if rnd.random() < 0.3:  # a playbook's custom field, present on some leads only
            lead["job_function"] = pick(["IT", "it", "Marketing", "Finance", None])
        etype = pick(event_types)
        url = name = None
        props: dict[str, Any] = {}
        if etype == "page_view":
            url = pick(urls)
        elif etype == "download":
            name = pick(downloads)
        elif etype == "form_submit":
            name = pick(forms)
            if rnd.random() < 0.6:
                props["channel"] = pick(["mobile", "Mobile", "web"])
        elif etype == "email_click" and rnd.random() < 0.7:
            props["campaign"] = pick(campaigns)
        elif etype == "webinar_attended" and rnd.random() < 0.8:
            props["minutes"] = pick([0, 3, 4, 5, 12, 29, 30, 55])
        event = {
            "id": f"ev{i}",
            "type": etype,
            "at": NOW - dt.timedelta(seconds=rnd.randint(0, 3600)),
            "url": url,
            "name": name,
            "properties": props,
        }
        span = pick([24, 72, 240])  # hours over which this lead's recent page views spread
        times = {
            "page_view": sorted(NOW - dt.timedelta(hours=rnd.uniform(0, span)) for _ in range(rnd.randint(0, 9))),
            "email_click": sorted(NOW - dt.timedelta(hours=rnd.uniform(0, 240)) for _ in range(rnd.randint(0, 3))),
        }
        score = round(rnd.uniform(0, 120), 1)
        grade = pick("ABCDEF")
        stage = pick(["new", "mql", "mql", "sql"])
        pairs.append((lead, event, score, grade, stage, NOW, make_history(times)))
    return pairs


# ------------------------------------------------------------------ engines
# Each engine: compile(rules) -> prepared; run(prepared, pairs) -> total score; fired(prepared, pair) -> [bool]*50.
# Everything an engine needs per pair (activation, conversions, binding count()) is inside the timed run.

RX: dict[str, re.Pattern[str]] = {}


def days_since(now: dt.datetime, value: Any) -> float | None:
    return RUNTIME["_days_since"](now, value)


@dataclass
class Engine:
    name: str
    compile: Callable[[list[Rule]], Any]
    run: Callable[[Any, list[Pair]], int]
    fired: Callable[[Any, Pair], list[bool]] | None  # None: only per-pair totals can be compared
    library: str | None = None
    note: str = ""


def _points() -> list[int]:
    return [r.points for r in RULES]


# (a) leadflow
def leadflow_compile(rules: list[Rule]) -> list[tuple[Callable[..., Any], int]]:
    vocabulary = Vocabulary().with_fields(["job_function"])
    return [(compile_expression(r.leadflow, vocabulary), r.points) for r in rules]


def leadflow_run(prepared: list[tuple[Callable[..., Any], int]], pairs: list[Pair]) -> int:
    total = 0
    for lead, event, score, grade, stage, now, history in pairs:
        for test, points in prepared:
            if test(lead, event, score, grade, stage, now, history):
                total += points
    return total


def leadflow_fired(prepared: list[tuple[Callable[..., Any], int]], pair: Pair) -> list[bool]:
    return [bool(test(*pair)) for test, _ in prepared]


# (a') leadflow as the engine scores an event: the section compiled into one function (rules/sections.py),
# rules that read the score evaluated on their own after it
def section_compile(rules: list[Rule]) -> tuple[Any, list[tuple[int, Callable[..., Any]]], list[int]]:
    vocabulary = Vocabulary().with_fields(["job_function"])
    section = compile_section([r.leadflow for r in rules], vocabulary)
    assert section is not None
    late = [(i, compile_expression(rules[i].leadflow, vocabulary)) for i in sorted(section.late)]
    return section.test, late, [r.points for r in rules]


def section_run(prepared: Any, pairs: list[Pair]) -> int:
    test, late, points = prepared
    total = 0
    for pair in pairs:
        for i in test(*pair):
            total += points[i]
        for i, rule in late:
            if rule(*pair):
                total += points[i]
    return total


def section_fired(prepared: Any, pair: Pair) -> list[bool]:
    test, late, points = prepared
    held = set(test(*pair)) | {i for i, rule in late if rule(*pair)}
    return [i in held for i in range(len(points))]


# (b) plain Python lambdas, (c) one generated function
def _python_namespace() -> dict[str, Any]:
    return {"RX": RX, "days_since": days_since}


def python_compile(rules: list[Rule]) -> list[tuple[Callable[..., Any], int]]:
    for r in rules:  # the programmer's regexes, compiled once
        for pattern in re.findall(r"RX\[(r?'.*?')\]", r.python):
            RX.setdefault(eval(pattern), re.compile(eval(pattern), re.IGNORECASE))
    namespace = _python_namespace()
    return [(eval(f"lambda {PARAMS}: {r.python}", namespace), r.points) for r in rules]


def generated_compile(rules: list[Rule]) -> Callable[..., int]:
    python_compile(rules)
    body = "\n".join(f"    if {r.python}:\n        total += {r.points}" for r in rules)
    namespace = _python_namespace()
    exec(f"def score_all({PARAMS}):\n    total = 0\n{body}\n    return total\n", namespace)
    return namespace["score_all"]


def generated_run(score_all: Callable[..., int], pairs: list[Pair]) -> int:
    return sum(score_all(*pair) for pair in pairs)


# (d) simpleeval: parsed once per rule; names and the per-lead count()/days_since() bound once per pair
def simpleeval_compile(rules: list[Rule]) -> Any:
    import simpleeval

    functions = {
        "contains": RUNTIME["_contains"],
        "matches": RUNTIME["_matches"],
        "starts_with": RUNTIME["_starts_with"],
        "ends_with": RUNTIME["_ends_with"],
        "lower": RUNTIME["_lower"],
    }
    evaluator = simpleeval.EvalWithCompoundTypes(functions=functions)
    return evaluator, [(r.simpleeval, evaluator.parse(r.simpleeval), r.points) for r in rules]


def _simpleeval_bind(evaluator: Any, pair: Pair) -> None:
    lead, event, score, grade, stage, now, history = pair
    evaluator.names = {"lead": lead, "event": event, "score": score, "grade": grade, "stage": stage}
    evaluator.functions["count"] = lambda event_type, days=None: RUNTIME["_count"](history, now, event_type, days)
    evaluator.functions["days_since"] = functools.partial(RUNTIME["_days_since"], now)


def simpleeval_run(prepared: Any, pairs: list[Pair]) -> int:
    evaluator, parsed = prepared
    total = 0
    for pair in pairs:
        _simpleeval_bind(evaluator, pair)
        for text, tree, points in parsed:
            if evaluator.eval(text, previously_parsed=tree):
                total += points
    return total


def simpleeval_fired(prepared: Any, pair: Pair) -> list[bool]:
    evaluator, parsed = prepared
    _simpleeval_bind(evaluator, pair)
    return [bool(evaluator.eval(text, previously_parsed=tree)) for text, tree, _ in parsed]


# (e) rule-engine: one Rule per rule, item syntax, a dict "thing" per pair
def rule_engine_compile(rules: list[Rule]) -> Any:
    import warnings

    import rule_engine

    warnings.simplefilter("ignore", category=DeprecationWarning)
    context = rule_engine.Context(default_timezone="utc", regex_flags=re.IGNORECASE)
    return [(rule_engine.Rule(r.rule_engine, context=context), r.points) for r in rules]


def _rule_engine_thing(pair: Pair) -> dict[str, Any]:
    lead, event, score, grade, stage, now, history = pair
    return {
        "lead": lead,
        "event": event,
        "score": score,
        "grade": grade,
        "stage": stage,
        "now": now,
        "count": lambda event_type, days: history(event_type, float(days), now),
    }


def rule_engine_run(prepared: Any, pairs: list[Pair]) -> int:
    total = 0
    for pair in pairs:
        thing = _rule_engine_thing(pair)
        for rule, points in prepared:
            if rule.matches(thing):
                total += points
    return total


def rule_engine_fired(prepared: Any, pair: Pair) -> list[bool]:
    thing = _rule_engine_thing(pair)
    return [rule.evaluate(thing) is True for rule, _ in prepared]


# CEL helpers shared by the CEL engines
def _cel_lower(value: Any) -> str:
    return value.lower() if isinstance(value, str) else ""


# (f) cel-python (celpy). Workarounds for celpy 0.5.0, each checked here:
# - functions are bound when a program is built, so the per-lead count() reads the current pair from a slot
#   (a contextvar in real code);
# - CompiledRunner transpiles a call to a custom function into the text `module.qualname` and execs it in
#   celpy.evaluation's globals, so a function from any other module is a SyntaxError or NameError: ours are
#   registered as attributes of celpy.evaluation;
# - `x != null` raises "no such overload" when x is not null (CEL has heterogeneous equality): written as
#   `type(x) != null_type`; `has(m.k) && m.k >= 30` raises on the CompiledRunner: written as `"k" in m && ...`;
# - the lark parser is a process-wide singleton built for the first runner class used: reset it when switching.
_CELPY_SLOT: list[Any] = [None, None]


def _celpy_text(text: str) -> str:
    text = re.sub(r"has\((\w+(?:\.\w+)*)\.(\w+)\)", r'"\2" in \1', text)
    return re.sub(r"([\w.]+) != null\b", r"type(\1) != null_type", text)


def _celpy_functions() -> dict[str, Any]:
    import celpy.evaluation
    from celpy import celtypes

    def leadflow_bench_lower(value: Any) -> Any:
        return celtypes.StringType(_cel_lower(value))

    def leadflow_bench_count(event_type: Any, days: Any) -> Any:
        history, now = _CELPY_SLOT
        return celtypes.IntType(history(str(event_type), float(days), now))

    functions = {"lower": leadflow_bench_lower, "count": leadflow_bench_count}
    for func in functions.values():
        func.__module__, func.__qualname__ = "celpy.evaluation", func.__name__
        setattr(celpy.evaluation, func.__name__, func)
    return functions


def celpy_compile(rules: list[Rule], shared_env: bool = False, compiled: bool = True) -> Any:
    import celpy
    from celpy.celparser import CELParser

    runner = celpy.CompiledRunner if compiled else celpy.InterpretedRunner
    CELParser.CEL_PARSER = None  # built again for this runner's tree class
    functions = _celpy_functions()
    shared = celpy.Environment(runner_class=runner)
    out = []
    for r in rules:
        env = shared if shared_env else celpy.Environment(runner_class=runner)
        out.append((env.program(env.compile(_celpy_text(r.cel)), functions=functions), r.points))
    return out


def _celpy_activation(pair: Pair) -> dict[str, Any]:
    import celpy
    from celpy import celtypes

    lead, event, score, grade, stage, now, history = pair
    _CELPY_SLOT[0], _CELPY_SLOT[1] = history, now
    return {
        "lead": celpy.json_to_cel(lead),
        "event": celpy.json_to_cel(event),
        "score": celtypes.DoubleType(score),
        "grade": celtypes.StringType(grade),
        "stage": celtypes.StringType(stage),
        "now": celtypes.TimestampType(now),
    }


def celpy_run(prepared: Any, pairs: list[Pair]) -> int:
    total = 0
    for pair in pairs:
        activation = _celpy_activation(pair)
        for program, points in prepared:
            if program.evaluate(activation):
                total += points
    return total


def celpy_fired(prepared: Any, pair: Pair) -> list[bool]:
    activation = _celpy_activation(pair)
    out = []
    for program, _ in prepared:
        value = program.evaluate(activation)
        if not isinstance(value, bool | int):
            raise TypeError(f"not a bool: {value!r}")
        out.append(bool(value))
    return out


# (g) common-expression-language (Rust CEL bindings): cel.compile once; a Context per pair
def rust_cel_compile(rules: list[Rule]) -> Any:
    import cel

    return [(cel.compile(r.cel), r.points) for r in rules]


# The Rust bindings compile a regex again on every evaluation (~100-400 us for our title patterns). Variant:
# x.matches("p") written as rx(x, "p"), a Python callback with a cached `re` pattern.
_MATCHES_CALL = re.compile(r'([\w.]+)\.matches\(("(?:[^"\\]|\\.)*")\)')


@functools.lru_cache(maxsize=256)
def _cached_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _rx(text: Any, pattern: str) -> bool:
    return isinstance(text, str) and _cached_regex(pattern).search(text) is not None


def rust_cel_rx_compile(rules: list[Rule]) -> Any:
    import cel

    return [(cel.compile(_MATCHES_CALL.sub(r"rx(\1, \2)", r.cel)), r.points) for r in rules]


def _rust_cel_context(pair: Pair) -> Any:
    import cel

    lead, event, score, grade, stage, now, history = pair
    return cel.Context(
        {"lead": lead, "event": event, "score": score, "grade": grade, "stage": stage, "now": now},
        {"lower": _cel_lower, "rx": _rx, "count": lambda event_type, days: history(event_type, float(days), now)},
    )


def rust_cel_run(prepared: Any, pairs: list[Pair]) -> int:
    total = 0
    for pair in pairs:
        context = _rust_cel_context(pair)
        for program, points in prepared:
            if program.execute(context) is True:
                total += points
    return total


def rust_cel_fired(prepared: Any, pair: Pair) -> list[bool]:
    context = _rust_cel_context(pair)
    out = []
    for program, _ in prepared:
        value = program.execute(context)
        if not isinstance(value, bool):
            raise TypeError(f"not a bool: {value!r}")
        out.append(value)
    return out


# (h) cel-expr-python (Google's C++ CEL): typed environment, strings extension (lowerAscii for our lower(),
# guarded against null). A function given only in the Activation fails ("No overload found in reference
# resolve step"), so count() is implemented on the environment and reads the current pair from a slot.
# Nested datetimes are not accepted in the data, so event.at becomes text (no rule reads it).
_CEL_CPP_SLOT: list[Any] = [None, None]
_LOWER_CALL = re.compile(r"lower\(([\w.]+)\)")


def _cel_native_text(text: str) -> str:
    return _LOWER_CALL.sub(lambda m: f'({m[1]} == null ? "" : {m[1]}.lowerAscii())', text)


def cel_cpp_compile(rules: list[Rule]) -> Any:
    from cel_expr_python import cel
    from cel_expr_python.ext import ext_strings

    dyn_map = cel.Type.Map(cel.Type.STRING, cel.Type.DYN)
    env = cel.NewEnv(
        variables={
            "lead": dyn_map,
            "event": dyn_map,
            "score": cel.Type.DOUBLE,
            "grade": cel.Type.STRING,
            "stage": cel.Type.STRING,
            "now": cel.Type.TIMESTAMP,
        },
        extensions=[ext_strings.ExtStrings()],
        functions=[
            cel.FunctionDecl(
                "count",
                [
                    cel.Overload(
                        "count_string_int",
                        return_type=cel.Type.INT,
                        parameters=[cel.Type.STRING, cel.Type.INT],
                        impl=_cel_cpp_count,
                    )
                ],
            )
        ],
    )
    return env, [(env.compile(_cel_native_text(r.cel)), r.points) for r in rules]


def _cel_cpp_count(event_type: str, days: int) -> int:
    history, now = _CEL_CPP_SLOT
    return history(event_type, float(days), now)


def _cel_cpp_activation(env: Any, pair: Pair) -> Any:
    lead, event, score, grade, stage, now, history = pair
    _CEL_CPP_SLOT[0], _CEL_CPP_SLOT[1] = history, now
    data = {
        "lead": lead,
        "event": {**event, "at": event["at"].isoformat()},
        "score": score,
        "grade": grade,
        "stage": stage,
        "now": now,
    }
    return env.Activation(data)


def cel_cpp_run(prepared: Any, pairs: list[Pair]) -> int:
    env, programs = prepared
    total = 0
    for pair in pairs:
        activation = _cel_cpp_activation(env, pair)
        for program, points in programs:
            if program.eval(activation).value() is True:
                total += points
    return total


def cel_cpp_fired(prepared: Any, pair: Pair) -> list[bool]:
    env, programs = prepared
    activation = _cel_cpp_activation(env, pair)
    out = []
    for program, _ in programs:
        value = program.eval(activation).value()
        if not isinstance(value, bool):
            raise TypeError(f"not a bool: {value!r}")
        out.append(value)
    return out


def _lambda_run(prepared: list[tuple[Callable[..., Any], int]], pairs: list[Pair]) -> int:
    return leadflow_run(prepared, pairs)


ENGINES = [
    Engine("leadflow (ast-compiled)", leadflow_compile, leadflow_run, leadflow_fired),
    Engine("leadflow, section in one function (as scored)", section_compile, section_run, section_fired),
    Engine("plain Python, one lambda per rule (the limit)", python_compile, _lambda_run, leadflow_fired),
    Engine("plain Python, one generated function (ceiling)", generated_compile, generated_run, None),
    Engine(
        "simpleeval (EvalWithCompoundTypes, parse once)",
        simpleeval_compile,
        simpleeval_run,
        simpleeval_fired,
        "simpleeval",
    ),
    Engine('rule-engine (lead["x"] syntax)', rule_engine_compile, rule_engine_run, rule_engine_fired, "rule-engine"),
    Engine(
        "cel-python / celpy (CompiledRunner, Environment per rule)", celpy_compile, celpy_run, celpy_fired, "cel-python"
    ),
    Engine(
        "cel-python / celpy (InterpretedRunner, default)",
        functools.partial(celpy_compile, compiled=False),
        celpy_run,
        celpy_fired,
        "cel-python",
    ),
    Engine(
        "common-expression-language (Rust CEL)",
        rust_cel_compile,
        rust_cel_run,
        rust_cel_fired,
        "common-expression-language",
    ),
    Engine(
        "common-expression-language, regex via cached callback",
        rust_cel_rx_compile,
        rust_cel_run,
        rust_cel_fired,
        "common-expression-language",
    ),
    Engine("cel-expr-python (Google C++ CEL, typed)", cel_cpp_compile, cel_cpp_run, cel_cpp_fired, "cel-expr-python"),
]


# ------------------------------------------------------------------ measuring


def version(dist: str | None) -> str:
    if dist is None:
        return ""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def time_engine(engine: Engine, prepared: Any, pairs: list[Pair], seconds: float) -> tuple[float, int]:
    """(median seconds per pass over all pairs, total score): up to 5 batches within about `seconds`."""
    start = time.perf_counter()
    total = engine.run(prepared, pairs)  # warm-up, the total score, and a first estimate
    one = max(time.perf_counter() - start, 1e-9)
    batches = min(5, max(1, int(seconds / one)))
    passes = max(1, int(seconds / batches / one))
    samples = []
    gc.collect()
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(passes):
            engine.run(prepared, pairs)
        samples.append((time.perf_counter() - start) / passes)
    return statistics.median(samples), total


def celpy_shared_env_check(pairs: list[Pair], reference: list[list[bool]]) -> str:
    """BASELINES.md: celpy broke when one Environment compiled several rules. Re-check it here."""
    try:
        prepared = celpy_compile(RULES, shared_env=True)
        got = [celpy_fired(prepared, pair) for pair in pairs]
    except Exception as exc:
        return f"one shared Environment: fails ({type(exc).__name__}: {str(exc)[:80]})"
    wrong = sum(1 for a, b in zip(got, reference, strict=True) for x, y in zip(a, b, strict=True) if x != y)
    return "one shared Environment: agrees" if not wrong else f"one shared Environment: {wrong} wrong results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per engine")
    args = parser.parse_args()

    pairs = make_pairs(args.pairs)
    python_rules = python_compile(RULES)
    reference = [leadflow_fired(python_rules, pair) for pair in pairs]
    points = _points()
    pair_totals = [sum(p for p, hit in zip(points, row, strict=True) if hit) for row in reference]
    expected_total = sum(pair_totals)
    per_rule = [sum(row[i] for row in reference) for i in range(len(RULES))]
    dead = [r.id for r, n in zip(RULES, per_rule, strict=True) if n == 0]
    always = [r.id for r, n in zip(RULES, per_rule, strict=True) if n == len(pairs)]
    assert not dead and not always, f"data set does not exercise: never {dead}, always {always}"

    print(
        f"Rule evaluation: {len(RULES)} scoring rules x {len(pairs)} (lead, event) pairs; "
        f"{sum(per_rule)} rule hits, total score {expected_total}"
    )
    print(
        f"{dt.date.today()}  Python {platform.python_version()}  {platform.machine()}  "
        f"{os.cpu_count()} cores; one process, one core"
    )
    rows: list[tuple[str, str, str]] = []  # (engine, version, rest of the line or a failure)
    timed: list[tuple[int, float, float, int]] = []  # (row index, compile ms, us per pair, total)
    failures = 0
    notes = []
    for engine in ENGINES:
        ver = version(engine.library) if engine.library else "-"
        if ver == "not installed":
            rows.append((engine.name, ver, "skipped: pip install -e '.[bench]'"))
            continue
        try:
            start = time.perf_counter()
            prepared = engine.compile(RULES)
            compile_ms = (time.perf_counter() - start) * 1000
            if engine.fired is not None:
                got = [engine.fired(prepared, pair) for pair in pairs]
                wrong = [
                    (RULES[i].id, p)
                    for p, (a, b) in enumerate(zip(got, reference, strict=True))
                    for i in range(len(RULES))
                    if a[i] != b[i]
                ]
            else:
                wrong = [("pair total", p) for p, pair in enumerate(pairs) if prepared(*pair) != pair_totals[p]]
            per_pass, total = time_engine(engine, prepared, pairs, args.seconds)
        except Exception as exc:
            failures += 1
            rows.append((engine.name, ver, f"FAILED: {type(exc).__name__}: {str(exc)[:200]}"))
            continue
        if wrong or total != expected_total:
            failures += 1
            rows.append(
                (
                    engine.name,
                    ver,
                    f"DISAGREES: total {total} != {expected_total}; {len(wrong)} results differ, first {wrong[:5]}",
                )
            )
            continue
        timed.append((len(rows), compile_ms, per_pass / len(pairs) * 1e6, total))
        rows.append((engine.name, ver, ""))
        if engine.compile is celpy_compile:
            notes.append("celpy " + celpy_shared_env_check(pairs, reference))

    limit_us = next(us for i, _, us, _ in timed if "limit" in rows[i][0])
    for i, compile_ms, us, total in timed:
        rows[i] = (
            rows[i][0],
            rows[i][1],
            f"{compile_ms:>8.1f} ms {us:>9.1f} {1e6 / us:>9,.0f} "
            f"{len(RULES) * 1e6 / us:>13,.0f} {us / limit_us:>9.1f}  agree ({total})",
        )
    print()
    header = (
        f"{'engine':<58} {'version':>9} {'compile 50':>11} {'us/pair':>9} {'pairs/s':>9} "
        f"{'rule evals/s':>13} {'x python':>9}  result"
    )
    print(header)
    print("-" * len(header))
    for name, ver, rest in rows:
        print(f"{name:<58} {ver:>9} {rest}")
    print()
    print("us/pair = microseconds to evaluate all 50 rules for one (lead, event), including what the engine needs")
    print("per pair (activation, value conversion, binding count()). x python = ratio to one lambda per rule.")
    print("'agree' = same 50 results on every pair as plain Python, and the same total score (in brackets).")
    for note in notes:
        print(note)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
