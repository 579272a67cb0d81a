"""Liveness and readiness: public bare answers, details only for a caller with the API key."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from api.main import create_app
from tests.conftest import TEST_API_KEY
from tests.test_robustness import offline_settings


def test_liveness_is_public(tmp_path: Path) -> None:
    with TestClient(create_app(offline_settings(tmp_path))) as http:
        answer = http.get("/health/live")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


def test_readiness_tells_anonymous_callers_only_that_it_is_not_ready(tmp_path: Path) -> None:
    with TestClient(create_app(offline_settings(tmp_path))) as http:  # Temporal: nobody listens
        answer = http.get("/health/ready")
        wrong_key = http.get("/health/ready", headers={"X-API-Key": "guess"})
    assert answer.status_code == 503
    assert answer.json() == {"status": "unavailable"}
    assert "temporal" not in answer.text.lower() and "database" not in answer.text.lower()
    assert int(answer.headers["Retry-After"]) > 0
    assert wrong_key.status_code == 503 and wrong_key.json() == {"status": "unavailable"}


def test_readiness_details_need_the_api_key(tmp_path: Path) -> None:
    with TestClient(create_app(offline_settings(tmp_path))) as http:
        by_header = http.get("/health/ready", headers={"X-API-Key": TEST_API_KEY})
        by_bearer = http.get("/health/ready", headers={"Authorization": f"Bearer {TEST_API_KEY}"})
    for answer in (by_header, by_bearer):
        assert answer.status_code == 503 and int(answer.headers["Retry-After"]) > 0
        body = answer.json()
        assert body["status"] == "unavailable" and body["checks"]["database"] == "ok"
        assert body["checks"]["temporal"].startswith("unavailable")
