"""A read-only mapping derived from another in time proportional to the change
(decision 71, restored by decision 191).

A derived mapping shares the previous one's *base* dict and holds only the entries
changed since (``None``: removed), so a one-record reload does not copy a sheet's
whole table (150,000 entries at 500k records). When the changes pass 1/32 of the
base (at least :data:`FOLD_MIN`), the derivation folds them into a new plain dict.

Order: the base's keys that were not changed, in the base's order, then the changed
keys still present, in the order they were first changed; a fold keeps that order,
so iterating a mapping gives the same sequence before and after it is folded.

Values are never ``None`` (records, ids, sets of ids): ``None`` marks a removal.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from itertools import chain
from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")

FOLD_SHARE = 32
"""Fold when the changes outnumber 1/FOLD_SHARE of the base's entries."""

FOLD_MIN = 256
"""... and :data:`FOLD_MIN` entries (a small table is cheaper to copy than to layer)."""

_MISSING: Any = object()


class Layered(Mapping[K, V]):
    """``base`` with ``changes`` applied (``None``: the key is gone); never mutated.
    Made by :func:`layered`, not directly."""

    __slots__ = ("_base", "_changes", "_len")

    def __init__(self, base: dict[K, V], changes: dict[K, V | None], length: int) -> None:
        self._base, self._changes, self._len = base, changes, length

    def __getitem__(self, key: K) -> V:
        value = self._changes.get(key, _MISSING)
        if value is _MISSING:
            return self._base[key]
        if value is None:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def get(self, key: K, default: Any = None) -> Any:
        value = self._changes.get(key, _MISSING)
        if value is _MISSING:
            return self._base.get(key, default)
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        value = self._changes.get(key, _MISSING)  # type: ignore[arg-type]
        return key in self._base if value is _MISSING else value is not None

    def __len__(self) -> int:
        return self._len

    # iteration builds lists in comprehensions: nested generators made iterating a
    # 150,000-entry table about 25x slower than a dict's, these about 10x (a lookup per entry)
    def __iter__(self) -> Iterator[K]:
        changes = self._changes
        kept = [key for key in self._base if key not in changes]
        return chain(kept, [key for key, value in changes.items() if value is not None])

    def _values(self) -> Iterator[V]:
        changes = self._changes
        kept = [value for key, value in self._base.items() if key not in changes]
        return chain(kept, [value for value in changes.values() if value is not None])

    def _items(self) -> Iterator[tuple[K, V]]:
        changes = self._changes
        kept = [(key, value) for key, value in self._base.items() if key not in changes]
        return chain(kept, [(key, value) for key, value in changes.items() if value is not None])

    def keys(self) -> KeysView[K]:
        return KeysView(self)

    def values(self) -> ValuesView[V]:
        return _Values(self)

    def items(self) -> ItemsView[K, V]:
        return _Items(self)

    def __reduce__(self) -> tuple[type[dict[K, V]], tuple[()], None, None, Iterator[tuple[K, V]]]:
        """Pickled (the snapshot cache) as the plain dict it reads as: not the base's
        entries that the changes mask, and loaded as a dict in the same order."""
        return dict, (), None, None, self._items()

    def __repr__(self) -> str:
        return f"Layered({len(self._base)} base entries, {len(self._changes)} changed, {self._len} in all)"


class _Values(ValuesView[V]):
    _mapping: Layered[Any, V]

    def __iter__(self) -> Iterator[V]:
        return self._mapping._values()


class _Items(ItemsView[K, V]):
    _mapping: Layered[K, V]

    def __iter__(self) -> Iterator[tuple[K, V]]:
        return self._mapping._items()


def layered(old: Mapping[K, V], changes: Mapping[K, V | None]) -> Mapping[K, V]:
    """``old`` with ``changes`` applied (``None``: remove the key), in time proportional
    to the changes made since ``old``'s base was folded; ``old`` itself when there are
    none, ``old``'s base when they undo all of ``old``'s own. ``old`` is a plain dict or
    a :class:`Layered`, and is left as it is."""
    if not changes:
        return old
    if not old:  # nothing to layer over (a full build's tables: one copy, no fold)
        return {key: value for key, value in changes.items() if value is not None}
    if isinstance(old, Layered):
        base, merged, length = old._base, dict(old._changes), old._len
    else:
        assert isinstance(old, dict), f"cannot layer over a {type(old).__name__}"
        base, merged, length = old, {}, len(old)
    for key, value in changes.items():
        length += (value is not None) - (key in old)
        if value is None and key not in base:
            merged.pop(key, None)  # added since the base, now gone: nothing to mask
        else:
            merged[key] = value
    if not merged:
        return base
    if len(merged) > max(FOLD_MIN, len(base) // FOLD_SHARE):
        folded = {key: value for key, value in base.items() if key not in merged}
        folded.update((key, value) for key, value in merged.items() if value is not None)
        return folded
    return Layered(base, merged, length)
