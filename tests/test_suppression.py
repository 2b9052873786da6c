"""Small-cell suppression: table-driven cases, the leak through totals, and a property test."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.survey.suppression import (
    count_text,
    grid_lines,
    lines_with_single_suppressed,
    primary,
    rate_text,
    suppress,
    suppressed_label,
)


def grid(interior: list[list[int]]) -> tuple[dict, list, list, list]:
    """Values and lines of a grid with a total column 'T' and a total row 'T'."""
    rows = [f"r{i}" for i in range(len(interior))] + ["T"]
    cols = [f"c{j}" for j in range(len(interior[0]))] + ["T"]
    values = {}
    for i, row in enumerate(interior):
        for j, v in enumerate(row):
            values[(rows[i], cols[j])] = v
        values[(rows[i], "T")] = sum(row)
    for j in range(len(interior[0])):
        values[("T", cols[j])] = sum(r[j] for r in interior)
    values[("T", "T")] = sum(map(sum, interior))
    return values, grid_lines(rows, cols, row_total="T", col_total="T"), rows, cols


def recoverable(values: dict, lines: list, masked: set) -> set:
    """Cells a reader can compute from one line where it is the only hidden cell (the naive leak)."""
    out = set()
    for line in lines:
        hidden = [c for c in line if c in masked]
        if len(hidden) == 1:
            out.add(hidden[0])
    return out


def test_naive_suppression_leaks_through_totals_and_complementary_closes_it() -> None:
    values, lines, _, _ = grid([[5, 20], [30, 40]])
    naive = primary(values, 10)
    assert naive == {("r0", "c0")}
    leaked = recoverable(values, lines, naive)
    assert ("r0", "c0") in leaked
    # the reader's arithmetic: row total minus the other published cell
    assert values[("r0", "T")] - values[("r0", "c1")] == 5
    masked = suppress(values, lines, 10)
    assert masked == {("r0", "c0"), ("r0", "c1"), ("r1", "c0"), ("r1", "c1")}
    assert recoverable(values, lines, masked) == set()
    assert lines_with_single_suppressed(lines, masked) == []


@pytest.mark.parametrize(
    ("values", "lines", "threshold", "expected"),
    [
        # nothing small: nothing hidden
        ({"a": 10, "b": 12, "t": 22}, [["a", "b", "t"]], 10, set()),
        # zeros are published and not chosen as complement while a non-zero cell exists
        ({"a": 3, "z": 0, "b": 40, "t": 43}, [["a", "z", "b", "t"]], 10, {"a", "b"}),
        # only a zero left as complement: it is used (better than leaking a)
        ({"a": 3, "z": 0, "t": 3}, [["a", "z", "t"]], 10, {"a", "t"}),
        # two small cells already protect each other
        ({"a": 3, "b": 4, "c": 50, "t": 57}, [["a", "b", "c", "t"]], 10, {"a", "b"}),
        # threshold 5: 7 is published
        ({"a": 3, "b": 7, "c": 50, "t": 60}, [["a", "b", "c", "t"]], 5, {"a", "b"}),
        # chain: complement in one line creates a single hidden cell in another line
        (
            {"a": 2, "b": 15, "t1": 17, "c": 30, "t2": 45},
            [["a", "b", "t1"], ["b", "c", "t2"]],
            10,
            {"a", "b", "c"},
        ),
        # threshold 1: nothing is suppressed
        ({"a": 1, "b": 2, "t": 3}, [["a", "b", "t"]], 1, set()),
    ],
)
def test_table_driven(values: dict, lines: list, threshold: int, expected: set) -> None:
    masked = suppress(values, lines, threshold)
    assert masked == expected
    assert lines_with_single_suppressed(lines, masked) == []


def test_links_hide_the_same_number_everywhere() -> None:
    values = {"a": 3, "b": 20, "t": 23, "t_copy": 23, "x": 23, "tt": 46}
    masked = suppress(values, [["a", "b", "t"], ["t_copy", "x", "tt"]], 10, links=[["t", "t_copy"]])
    # a hides b (smallest other); no link touched yet, so t stays published
    assert masked == {"a", "b"}
    values2 = {"a": 3, "t": 3, "t_copy": 3, "x": 40, "tt": 43}
    masked2 = suppress(values2, [["a", "t"], ["t_copy", "x", "tt"]], 10, links=[["t", "t_copy"]])
    assert {"a", "t", "t_copy", "x"} <= masked2
    assert lines_with_single_suppressed([["a", "t"], ["t_copy", "x", "tt"]], masked2) == []


def test_labels_and_rates() -> None:
    assert suppressed_label(10) == "<10"
    assert count_text(0, False, 10) == 0
    assert count_text(4, True, 10) == "<10"
    assert count_text(None, False, 10) == ""
    assert rate_text(3, 5, False) == 60.0
    assert rate_text(3, 5, True) == "*"
    assert rate_text(0, 0, False) == ""


def test_bad_threshold_and_unknown_cells() -> None:
    with pytest.raises(ValueError):
        suppress({"a": 1}, [], 0)
    with pytest.raises(KeyError):
        suppress({"a": 1}, [["a", "b"]], 10)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=1, max_value=5).flatmap(
        lambda r: st.integers(min_value=1, max_value=5).flatmap(
            lambda c: st.lists(
                st.lists(
                    st.one_of(st.just(0), st.integers(1, 12), st.integers(10, 200)), min_size=c, max_size=c
                ),
                min_size=r,
                max_size=r,
            )
        )
    ),
    st.integers(min_value=2, max_value=15),
)
def test_property_no_single_hidden_cell_and_no_small_published(
    interior: list[list[int]], threshold: int
) -> None:
    values, lines, _, _ = grid(interior)
    masked = suppress(values, lines, threshold)
    assert lines_with_single_suppressed(lines, masked) == []
    for cellid, v in values.items():
        if cellid not in masked:
            assert v == 0 or v >= threshold
    assert recoverable(values, lines, masked) == set()


@settings(max_examples=150, deadline=None)
@given(st.data(), st.integers(min_value=2, max_value=12))
def test_property_on_the_full_survey_layout(data: st.DataObject, threshold: int) -> None:
    """Random values on every survey cell: the fixed point holds over all lines and links."""
    from toolkit.survey.tables import build_layout

    layout = build_layout(["2026-04", "2026-05"])
    cells = sorted({c for ids in layout.owned.values() for c in ids} | {c for ln in layout.lines for c in ln})
    values = {c: data.draw(st.one_of(st.just(0), st.integers(1, 30)), label=c) for c in cells}
    masked = suppress(values, layout.lines, threshold, layout.links)
    assert lines_with_single_suppressed(layout.lines, masked) == []
    for group in layout.links:
        assert all(c in masked for c in group) or not any(c in masked for c in group)
    assert all(v == 0 or v >= threshold for c, v in values.items() if c not in masked)
