"""Layered mappings (decision 71) against plain dicts changed the plain way.

The oracle is a dict per version, copied and changed with ``dict`` operations;
each derivation picks any earlier version as its parent (snapshots branch: a
build that lost its race, a lineage never searched), and every version must still
read as its own dict after all the derivations that followed."""

from __future__ import annotations

import pickle
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotreload.data import layered
from hotreload.data.layered import Layered

KEYS = [f"k{i}" for i in range(12)]

# a step: (which earlier version to derive from, {key: value or None (remove)})
steps = st.lists(
    st.tuples(st.integers(0, 10**6),
              st.dictionaries(st.sampled_from(KEYS), st.one_of(st.none(), st.integers(0, 5)), max_size=6)),
    min_size=1, max_size=25)


def check_reads(mapping: object, expected: dict[str, int]) -> None:
    assert isinstance(mapping, (dict, Layered))
    assert len(mapping) == len(expected)
    assert dict(mapping) == expected
    listed = list(mapping)
    assert sorted(listed) == sorted(expected)  # each present key once
    assert list(mapping.keys()) == listed
    assert list(mapping.values()) == [expected[k] for k in listed]  # the same order as the keys
    assert list(mapping.items()) == [(k, expected[k]) for k in listed]
    assert len(mapping.values()) == len(expected)
    for key in [*KEYS, "absent"]:
        assert (key in mapping) == (key in expected)
        assert mapping.get(key) == expected.get(key)
        assert mapping.get(key, "default") == expected.get(key, "default")
        if key in expected:
            assert mapping[key] == expected[key]
        else:
            with pytest.raises(KeyError):
                mapping[key]


@settings(max_examples=150, deadline=None)
@given(base=st.dictionaries(st.sampled_from(KEYS), st.integers(0, 5)), steps=steps,
       fold_min=st.sampled_from([0, 3, 10_000]))
def test_every_version_reads_as_the_dict_its_changes_make(
        base: dict[str, int], steps: list[tuple[int, dict[str, int | None]]], fold_min: int) -> None:
    """``fold_min``: 0 folds nearly every derivation; 10,000 never does."""
    with patch.object(layered, "FOLD_MIN", fold_min):
        versions: list[tuple[object, dict[str, int]]] = [(dict(base), dict(base))]
        for pick, changes in steps:
            parent, parent_dict = versions[pick % len(versions)]
            child = layered.layered(parent, changes)  # type: ignore[arg-type]
            expected = dict(parent_dict)
            for key, value in changes.items():
                if value is None:
                    expected.pop(key, None)
                else:
                    expected[key] = value
            check_reads(child, expected)
            if not changes:
                assert child is parent
            versions.append((child, expected))
        for mapping, expected in versions:  # no derivation changed an earlier version
            check_reads(mapping, expected)


def test_a_fold_keeps_the_order_and_comes_after_one_thirty_second_of_the_base() -> None:
    base = {f"k{i}": i for i in range(64 * 32)}
    with patch.object(layered, "FOLD_MIN", 0):
        current: object = base
        for n in range(64):
            current = layered.layered(current, {f"k{n * 7}": -n})  # type: ignore[arg-type]
            assert isinstance(current, Layered)  # 64 changes: not past 1/32 of 2,048
        order = list(current)  # type: ignore[call-overload]
        folded = layered.layered(current, {"k1": None})  # type: ignore[arg-type]
    assert type(folded) is dict
    assert list(folded) == [key for key in order if key != "k1"]
    assert folded["k7"] == -1 and "k1" not in folded and len(folded) == len(base) - 1


def test_a_change_back_to_nothing_leaves_the_base() -> None:
    base = {"a": 1}
    added = layered.layered(base, {"b": 2})
    assert layered.layered(added, {"b": None}) is base


def test_a_layered_mapping_pickles_as_the_plain_dict_it_reads_as() -> None:
    """The snapshot cache pickles the tables and indices: a layer goes in as the dict
    it reads as (not the base's masked entries) and comes back as one, in its order."""
    base = {f"k{i}": i for i in range(10)}
    derived = layered.layered(base, {"k3": None, "k5": -5, "new": 99})
    assert isinstance(derived, Layered)
    loaded = pickle.loads(pickle.dumps(derived, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(loaded) is dict
    assert list(loaded.items()) == list(derived.items())
    assert b"k3" not in pickle.dumps(derived)
