"""C-MOVE / C-GET SCP (placeholder until retrieve lands)."""

from __future__ import annotations

from collections.abc import Iterator

from pynetdicom import evt

from tessera.archive import Archive


def handle_move(event: evt.Event, archive: Archive) -> Iterator:
    yield None, None


def handle_get(event: evt.Event, archive: Archive) -> Iterator:
    yield 0
