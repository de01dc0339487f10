"""Cutting a sequence into consecutive groups of bounded size: requests of a STOW-RS upload,
stored frames or instances read in one worker-thread call."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def by_size(
    items: Iterable[T],
    size_of: Callable[[T], int],
    max_bytes: int,
    max_count: int | None = None,
) -> Iterator[list[T]]:
    """Consecutive groups, in order, of at most `max_bytes` (by `size_of`) and `max_count`
    items; an item larger than `max_bytes` is a group of its own. Lazy: each group is made
    when it is asked for."""
    group: list[T] = []
    size = 0
    for item in items:
        length = size_of(item)
        if group and (
            size + length > max_bytes or (max_count is not None and len(group) >= max_count)
        ):
            yield group
            group, size = [], 0
        group.append(item)
        size += length
    if group:
        yield group
