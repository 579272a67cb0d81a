"""How the Temporal client secures its connection, from settings named as the Temporal CLI names them:
plain for a dev server, TLS for Temporal Cloud (API key or mTLS) and a self-hosted cluster behind TLS."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.service import TLSConfig

from runtime import TemporalTlsProblem, temporal_tls
from settings import Settings


def test_a_dev_server_is_plain() -> None:
    assert temporal_tls(Settings()) is False


def test_an_api_key_turns_tls_on_unless_it_is_explicitly_off() -> None:
    # Before: TEMPORAL_API_KEY alone sent the key over plaintext, which Temporal Cloud refuses.
    assert temporal_tls(Settings(temporal_api_key="cloud-key")) is True
    assert temporal_tls(Settings(temporal_api_key="cloud-key", temporal_tls=False)) is False
    assert temporal_tls(Settings(temporal_tls=True)) is True


def test_mtls_reads_the_client_certificate_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "client.pem").write_bytes(b"CERT")
    (tmp_path / "client.key").write_bytes(b"KEY")
    (tmp_path / "ca.pem").write_bytes(b"CA")
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(tmp_path / "client.pem"))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", str(tmp_path / "client.key"))
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", str(tmp_path / "ca.pem"))
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_NAME", "temporal.internal")
    config = temporal_tls(Settings())
    assert config == TLSConfig(
        server_root_ca_cert=b"CA", domain="temporal.internal", client_cert=b"CERT", client_private_key=b"KEY"
    )


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"temporal_tls_client_cert_path": Path("c.pem")}, "go together"),
        ({"temporal_tls_client_key_path": Path("c.key")}, "go together"),
        ({"temporal_tls": False, "temporal_tls_server_name": "x"}, "TEMPORAL_TLS=false, yet"),
        ({"temporal_tls_server_ca_cert_path": Path("/nonexistent/ca.pem")}, "cannot be read"),
    ],
)
def test_contradictions_and_missing_files_say_what_to_fix(fields: dict[str, object], says: str) -> None:
    with pytest.raises(TemporalTlsProblem, match=says):
        temporal_tls(Settings(**fields))  # type: ignore[arg-type]
