"""What every `tessera` subcommand shares: the store flags, settings from flags and the
environment, and the one way a command opens the archive.

Only `tessera migrate`, `tessera serve`, `tessera scp` and `tessera admin bootstrap` migrate
the index (`open_archive(..., migrate=True)`); every other command opens an index that must
already be at this Tessera's schema, else it stops with "run `tessera migrate`"
(exit status 2). See docs/running.md."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from tessera.config import Settings, load_settings
from tessera.log import configure_logging

if TYPE_CHECKING:  # the archive's imports are heavy: `tessera upload` does without them
    from tessera.archive import Archive


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        data_dir=getattr(args, "data_dir", None),
        database_url=getattr(args, "database_url", None),
        log_format=getattr(args, "log_format", None),
        dimse_port=getattr(args, "dimse_port", None),
        dimse_aet=getattr(args, "dimse_aet", None),
        viewer=getattr(args, "viewer", None),
    )


def add_store_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        help="where files and the SQLite index live (TESSERA_DATA_DIR, default ./data)",
    )
    parser.add_argument(
        "--database-url",
        help="SQLAlchemy URL of the index (TESSERA_DATABASE_URL, default SQLite in the data dir)",
    )
    parser.add_argument(
        "--log-format", choices=["json", "text"], help="log line format (TESSERA_LOG_FORMAT)"
    )


def open_archive(settings: Settings, *, migrate: bool = False) -> Archive:
    """The archive a command works on; `migrate` first brings the schema to head. An index
    at another schema revision ends the command with "run `tessera migrate`"."""
    from tessera.archive import Archive, migrate_index
    from tessera.index.migrate import SchemaNotCurrent
    from tessera.storage.blobstore import StorageUnavailable

    if migrate:
        migrate_index(settings)
    try:
        return Archive.open(settings)
    except (SchemaNotCurrent, StorageUnavailable) as exc:
        # Also wrong object store settings or credentials: one clear line, no traceback.
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def open_for_command(args: argparse.Namespace, *, migrate: bool = False) -> Archive:
    """The archive of a short management command (warnings only on the console)."""
    configure_logging("WARNING", "text")
    return open_archive(settings_from(args), migrate=migrate)


def print_result(result: dict | list) -> None:
    """A command's result as plain lines: key: value, or one tab-separated row per item."""
    if isinstance(result, list):
        for row in result:
            print("\t".join(f"{k}={v}" for k, v in row.items()))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")


def add_action(
    actions: argparse._SubParsersAction,
    name: str,
    func: Callable[[argparse.Namespace], dict | list],
    help_text: str,
    show: Callable[[dict | list], None] = print_result,
) -> argparse.ArgumentParser:
    """A management subcommand: store flags and --json, `func`'s result printed by `show`
    (or as JSON), ValueError/LookupError as one "error:" line with exit status 2."""
    parser = actions.add_parser(name, help=help_text)
    add_store_flags(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")

    def run(args: argparse.Namespace) -> int:
        try:
            result = func(args)
        except (ValueError, LookupError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if args.json:
            print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        else:
            show(result)
        return 0

    parser.set_defaults(func=run)
    return parser
