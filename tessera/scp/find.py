"""C-FIND SCP (placeholder until the query engine lands)."""

from __future__ import annotations

from collections.abc import Iterator

from pynetdicom import evt

from tessera.archive import Archive


def handle_find(event: evt.Event, archive: Archive) -> Iterator:
    yield 0xC000, None
