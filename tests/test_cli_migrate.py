"""Migrations run only where asked: `tessera migrate` (and serve, scp, admin bootstrap);
any other command on an unmigrated index stops with "run `tessera migrate`"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, inspect


def _cli(data_dir: Path, database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TESSERA_DATA_DIR=str(data_dir), TESSERA_DATABASE_URL=database_url)
    return subprocess.run(
        [sys.executable, "-m", "tessera.cli", *args], env=env, capture_output=True, text=True
    )


def _tables(database_url: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_commands_refuse_an_unmigrated_index_until_tessera_migrate(tmp_path, database_url):  # type: ignore[no-untyped-def]
    data_dir = tmp_path / "data"
    for command in (["sources", "list"], ["peers", "list"], ["admin", "users"], ["sweep"]):
        refused = _cli(data_dir, database_url, *command)
        assert refused.returncode == 2, (command, refused.stderr)
        assert "run `tessera migrate`" in refused.stderr, command
        assert "Traceback" not in refused.stderr
    assert _tables(database_url) == set()  # nothing was created behind the user's back

    migrated = _cli(data_dir, database_url, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "is up to date" in migrated.stdout
    assert {"alembic_version", "tenant", "study"} <= _tables(database_url)

    listed = _cli(data_dir, database_url, "sources", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("default\t")
