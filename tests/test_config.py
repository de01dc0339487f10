"""Settings come from defaults, a TOML file, TESSERA_* variables and flags, in that order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tessera.config import export_settings, load_settings


def test_defaults_give_an_embedded_server(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TESSERA_CONFIG", "TESSERA_PORT", "TESSERA_DATA_DIR", "TESSERA_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.resolved_database_url.startswith("sqlite:///")
    assert settings.resolved_database_url.endswith("data/index.sqlite3")


def test_precedence_file_then_environment_then_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "tessera.toml"
    config.write_text('port = 9000\ndata-dir = "/srv/a"\ncors_origins = ["https://viewer"]\n')
    monkeypatch.setenv("TESSERA_CONFIG", str(config))
    monkeypatch.delenv("TESSERA_PORT", raising=False)
    monkeypatch.delenv("TESSERA_DATA_DIR", raising=False)
    assert load_settings().port == 9000
    assert load_settings().cors_origins == ("https://viewer",)
    monkeypatch.setenv("TESSERA_PORT", "9100")
    assert load_settings().port == 9100
    assert load_settings(port=9200).port == 9200
    assert load_settings().data_dir == Path("/srv/a")


def test_unknown_key_in_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("prot = 1\n")
    monkeypatch.setenv("TESSERA_CONFIG", str(config))
    with pytest.raises(ValueError, match="prot"):
        load_settings()


def test_exported_settings_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    # export_settings writes os.environ: give it a throw-away copy.
    monkeypatch.setattr(os, "environ", dict(os.environ))
    os.environ.pop("TESSERA_CONFIG", None)
    original = load_settings(port=8123, data_dir="/tmp/x", workers=3)
    export_settings(original)
    assert load_settings() == original
