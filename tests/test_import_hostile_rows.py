"""The CSV import is an edge like POST /v1/leads (issue 6 items 4, 5): a row whose address leadflow can never
send to (a Unicode local part without LEADFLOW_SMTP_UTF8) or whose name or company holds a control character
is rejected with its reason in the import report, never imported to fail at send time. Line breaks inside a
quoted cell become a space, as every import's text does; bidi overrides are stripped as at the API.

The importer runs for real on a SQLite store; only the delivery to Temporal is a stand-in that keeps what it got.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from capture.importer import Importer, ImportOptions, import_id_for
from rules.cleaning import CleaningError
from rules.import_rows import row_attributes
from store import imports

ROWS = [
    ("ok@example.com", "Ann", "Acme"),
    ("用户@example.com", "Li", "Acme"),
    ("nul@example.com", "Zo\x00ë", "Acme"),
    ("esc@example.com", "Bob", "Ac\x1b[31mme"),
    ("multi@example.com", "Eve", "Acme\r\nInc."),
    ("rtl@example.com", "\u202eDan", "Acme"),
    ("idn@bücher.example", "Jörg", "Bücher"),
]


class KeptDelivery:
    def __init__(self) -> None:
        self.leads: dict[str, dict[str, Any]] = {}

    async def deliver(self, leads: dict[str, dict[str, Any]], consents: object = None) -> dict[str, str]:
        self.leads |= leads
        return {}


async def run_import(sessions: async_sessionmaker[AsyncSession], path: Path, smtp_utf8: bool) -> tuple[Any, ...]:
    delivery = KeptDelivery()
    importer = Importer(sessions, delivery, "id-key", smtp_utf8=smtp_utf8)  # type: ignore[arg-type]
    options = ImportOptions("fair-2026")
    import_id = import_id_for(path, options)
    await importer.prepare(path, path.name, options, import_id)
    final = await importer.run(import_id)
    async with sessions() as session:
        report = await imports.list_issues(session, import_id)
    return final, report, delivery


@pytest.fixture
def hostile_csv(tmp_path: Path) -> Path:
    path = tmp_path / "hostile.csv"
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["Email", "First name", "Company"])
        writer.writerows(ROWS)
    return path


async def test_hostile_rows_are_rejected_with_their_reason(
    sessions: async_sessionmaker[AsyncSession], hostile_csv: Path
) -> None:
    final, report, delivery = await run_import(sessions, hostile_csv, smtp_utf8=False)
    assert (final["status"], final["created"], final["rejected"]) == ("done", 4, 3), final
    rejected = {r["line"]: r["reason"] for r in report if r["outcome"] == "rejected"}
    assert sorted(rejected) == [3, 4, 5]
    assert "LEADFLOW_SMTP_UTF8" in rejected[3]
    assert "first_name" in rejected[4] and "U+0000" in rejected[4]
    assert "company" in rejected[5] and "U+001B" in rejected[5]
    sent = {a["email"]: a for a in delivery.leads.values()}
    assert set(sent) == {"ok@example.com", "multi@example.com", "rtl@example.com", "idn@bücher.example"}
    assert sent["multi@example.com"]["company"] == "Acme Inc."
    assert sent["rtl@example.com"]["first_name"] == "Dan"


async def test_unicode_local_parts_are_imported_when_the_relay_offers_smtputf8(
    sessions: async_sessionmaker[AsyncSession], hostile_csv: Path
) -> None:
    final, _, delivery = await run_import(sessions, hostile_csv, smtp_utf8=True)
    assert (final["created"], final["rejected"]) == (5, 2), final
    assert "用户@example.com" in {a["email"] for a in delivery.leads.values()}


def test_row_attributes_refuses_what_a_header_cannot_carry() -> None:
    with pytest.raises(CleaningError, match=r"last_name.*U\+0000"):
        row_attributes({"email": "a@example.com", "last_name": "Doe\x85\x00"})
    with pytest.raises(CleaningError, match="LEADFLOW_SMTP_UTF8"):
        row_attributes({"email": "用户@example.com"})
    assert row_attributes({"email": "用户@example.com"}, smtputf8=True).attributes["email"] == "用户@example.com"
