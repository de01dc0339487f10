"""The Alembic migrations in tessera/migrations: run them (`upgrade_to_head`: `tessera migrate`,
and `tessera serve` / `tessera scp` before they start) and check that an index is at head
(`check_schema`: every other way of opening the archive).

Opening the archive never migrates; see docs/running.md, "Schema migrations"."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

import tessera.migrations

MIGRATIONS_DIR = Path(tessera.migrations.__file__).parent
# Serializes concurrent starts against one PostgreSQL database (arbitrary fixed key).
_PG_LOCK_KEY = 0x7E55E7A


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_to_head(engine: Engine) -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
            conn.commit()
        try:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            conn.commit()
        finally:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
                conn.commit()


class SchemaNotCurrent(RuntimeError):
    """The index is empty or at an older (or newer) schema revision than this Tessera."""


def check_schema(engine: Engine) -> None:
    """Raise SchemaNotCurrent unless the index is at this Tessera's head revision."""
    url = engine.url.render_as_string(hide_password=True)
    heads = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    if current != heads:
        at = ", ".join(sorted(current)) or "no schema"
        raise SchemaNotCurrent(
            f"the index at {url} is at {at}, this Tessera needs {', '.join(sorted(heads))}: "
            "run `tessera migrate` (with the same --data-dir / --database-url)"
        )
