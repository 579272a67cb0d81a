# ruff: noqa: RUF001
"""The shared cleaning rules (rules/cleaning.py) and the CSV column mapping (rules/import_rows.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api.lead_ids import lead_id_for, normalize_email
from api.schemas import LeadIn
from rules.cleaning import CleaningError, clean_attributes, clean_email, clean_phone, company_key, country_code
from rules.import_rows import import_attributes, import_consent, map_columns, row_attributes


def test_a_full_width_email_is_the_same_lead_as_its_ascii_twin() -> None:
    assert normalize_email("ｋｅｎ＠ｅｘａｍｐｌｅ．ｃｏｍ") == "ken@example.com"
    assert lead_id_for("ｋｅｎ＠ｅｘａｍｐｌｅ．ｃｏｍ", "k") == lead_id_for(" Ken@Example.com ", "k")


def test_the_issues_full_width_api_email_reaches_the_same_lead() -> None:
    body = LeadIn(email="ｋｅｎ@example.com")  # issue 8: it became a second lead
    assert body.attributes()["email"] == "ken@example.com"
    assert lead_id_for(body.email, "k") == lead_id_for("ken@example.com", "k")


def test_ascii_lead_ids_are_unchanged() -> None:
    # The id every existing lead already has (computed with the pre-NFKC rule: strip + lower).
    assert lead_id_for("Ann.Lee@Example.com", "k") == "lead-61c076494f281890668a904c22bcd121"


def test_emails_are_trimmed_lowered_and_validated() -> None:
    assert clean_email("  Ann.Lee@EXAMPLE.com ") == "ann.lee@example.com"
    with pytest.raises(CleaningError, match="must have an @-sign"):
        clean_email("not-an-email")
    with pytest.raises(CleaningError, match="missing"):
        clean_email("  ")


@pytest.mark.parametrize(
    "names",
    [
        [
            "株式会社リードフロー",
            "リードフロー株式会社",
            "リードフロー（株）",
            "(株)リードフロー",
            "㈱リードフロー",
            "ﾘｰﾄﾞﾌﾛｰ 株式会社",
        ],
        ["Acme", "ACME Inc.", "Acme Co., Ltd.", "Acme Co.,Ltd", "acme corp", "Acme Corporation", "ＡＣＭＥ　ＩＮＣ"],
    ],
)
def test_company_variants_share_one_match_key(names: list[str]) -> None:
    assert len({company_key(name) for name in names}) == 1


def test_phones_become_e164_by_country() -> None:
    assert clean_phone("03-1234-5678", "JP") == "+81312345678"
    assert clean_phone("０９０－１２３４－５６７８", "JP") == "+819012345678"
    assert clean_phone("+1 (415) 555-2671", None) == "+14155552671"
    with pytest.raises(CleaningError, match="no \\+country code"):
        clean_phone("03-1234-5678", None)
    with pytest.raises(CleaningError, match="not a valid number for JP"):
        clean_phone("03-12", "JP")


@pytest.mark.parametrize("name", ["日本", "Japan", "JP", "jp", "ＪＰ", "日本国", "JPN"])
def test_japan_in_every_spelling_is_jp(name: str) -> None:
    assert country_code(name) == "JP"


def test_other_countries_by_english_and_japanese_name() -> None:
    assert [country_code(n) for n in ("United States", "USA", "アメリカ合衆国", "米国", "英国", "United Kingdom")] == [
        "US", "US", "US", "US", "GB", "GB"]  # fmt: skip
    with pytest.raises(CleaningError, match="Atlantis"):
        country_code("Atlantis")


def test_api_input_goes_through_the_same_cleaning() -> None:
    body = LeadIn(
        email="Ann@Example.com", company="ＡＣＭＥ　Inc.", country="jp", phone="03-1234-5678", title=" ＣＥＯ "
    )
    attributes = body.attributes()
    assert attributes == {"email": "ann@example.com", "company": "ACME Inc.", "company_key": "acme",
                          "country": "JP", "phone": "+81312345678", "title": "CEO"}  # fmt: skip
    assert attributes == clean_attributes(body.model_dump(exclude_none=True, exclude={"utm", "fields"})).attributes


@pytest.mark.parametrize("sent", [50000, 50000.0, "50000", "¥50,000"])
def test_a_numeric_budget_is_taken_as_sent_and_kept_a_number(sent: object) -> None:
    """Issue 8: `budget: 50000` was refused (BANT fields were typed as text)."""
    assert LeadIn.model_validate({"email": "a@example.com", "budget": sent}).attributes()["budget"] == sent


@pytest.mark.parametrize("sent", ["Japan", "日本", "ＪＰ", "jp", " japan "])
def test_api_and_form_countries_by_name_become_iso_codes(sent: str) -> None:
    """Issue 8 item 4: the import's country cleaning applies to API and form input: a form's country select
    sends "Japan" or 日本, which POST /v1/leads refused (it took two-letter codes only)."""
    assert LeadIn(email="a@example.com", country=sent).attributes()["country"] == "JP"


def test_an_api_country_nobody_can_read_is_kept_as_given_as_the_import_keeps_it() -> None:
    assert LeadIn(email="a@example.com", country="Atlantis").attributes()["country"] == "Atlantis"
    assert LeadIn(email="a@example.com", country="zz").country == "ZZ"


def test_japanese_and_english_headers_map_and_overrides_win() -> None:
    headers = ["メールアドレス", "姓", "名", "会社名", "電話番号", "役職", "国", "従業員数", "備考"]
    assert map_columns(headers) == {0: "email", 1: "last_name", 2: "first_name", 3: "company", 4: "phone",
                                    5: "title", 6: "country", 7: "company_size"}  # fmt: skip
    english = ["E-mail Address", "First Name", "Last Name", "Company Name", "Job Title", "Phone Number", "Country"]
    assert list(map_columns(english).values()) == ["email", "first_name", "last_name", "company", "title", "phone",
                                                   "country"]  # fmt: skip
    assert map_columns(["連絡先", "備考"], {"連絡先": "email", "備考": "note"}) == {0: "email", 1: "note"}
    with pytest.raises(CleaningError, match="no email column"):
        map_columns(["name", "company"])
    with pytest.raises(CleaningError, match="no column 'Mail'"):
        map_columns(["email"], {"Mail": "email"})


def test_a_row_is_split_sized_and_cleaned() -> None:
    cleaned = row_attributes({"email": "ｂｏ＠ｅｘａｍｐｌｅ．ｏｒｇ", "full_name": "佐藤 花子",
                              "company_size": "1,200名", "phone": "090-1234-5678", "country": "日本"})  # fmt: skip
    assert cleaned.attributes == {"email": "bo@example.org", "last_name": "佐藤", "first_name": "花子",
                                  "company_size": 1200, "phone": "+819012345678", "country": "JP"}  # fmt: skip
    assert row_attributes({"email": "a@example.com", "full_name": "Ann Marie Lee"}).attributes["first_name"] == (
        "Ann Marie"
    )


def test_an_import_sets_its_source_only_on_leads_it_creates() -> None:
    new = import_attributes({"email": "a@example.com"}, source="expo-2026", consent_basis="consent",
                            import_id="imp-1", creates_lead=True)  # fmt: skip
    assert new == {"email": "a@example.com", "source": "expo-2026", "consent_basis": "consent", "last_import": "imp-1"}
    known = import_attributes({"email": "a@example.com"}, source="expo-2026", consent_basis=None, import_id="imp-1",
                              creates_lead=False)  # fmt: skip
    assert "source" not in known and "consent_basis" not in known


def test_a_consent_column_is_found_and_read_in_english_and_japanese() -> None:
    assert map_columns(["メールアドレス", "メール配信希望"]) == {0: "email", 1: "consent"}
    assert map_columns(["Email", "Opt-In"])[1] == "consent"
    at = datetime(2026, 5, 1, tzinfo=UTC)

    def status(cell: str | None) -> str | None:
        record, _ = import_consent(cell, basis="booth form", import_id="imp-1", at=at)
        return record.status if record is not None else None

    assert [status(c) for c in ("Yes", "ＹＥＳ", "はい", "希望する", "○", "1", "opted_in")] == ["opted_in"] * 7
    assert [status(c) for c in ("no", "FALSE", "いいえ", "希望しない", "不要", "0", "Opted-Out")] == ["opted_out"] * 7
    record, warning = import_consent("はい", basis="booth form", import_id="imp-1", at=at)
    assert warning is None and record is not None
    assert (record.source, record.at, record.wording, record.form_id) == ("import", at, "booth form", "import:imp-1")
    assert import_consent("  ", basis=None, import_id="imp-1", at=at) == (None, None)  # empty: nothing said
    unreadable, warning = import_consent("maybe later", basis=None, import_id="imp-1", at=at)
    assert unreadable is None and warning is not None and "'maybe later'" in warning


def test_a_full_width_at_sign_on_the_api_reaches_the_ascii_lead() -> None:
    """A full-width address typed on a Japanese keyboard is the same person as the ASCII spelling."""
    from api.schemas import IdentifiedEventIn, LeadIn

    assert LeadIn(email="ｋｅｎ＠ｅｘａｍｐｌｅ．ｃｏｍ").email == "ken@example.com"
    assert IdentifiedEventIn(email="ＫＥＮ＠example.com", type="page_view").email == "ken@example.com"
