"""Small-cell suppression with complementary suppression (pure functions, no I/O).

A published table is a set of *cells* (any hashable id → count) and a set of *lines*: groups of
cells that a reader can add up, e.g. a row of month counts plus its total, or the categories of
a breakdown plus the count they break down. Cells with 1 ≤ n < threshold are suppressed
(*primary*). A line with exactly one suppressed cell would let a reader recover that cell from the
others, so the smallest other cell of the line is suppressed too (*complementary*), preferring
non-zero cells; this repeats until no line has exactly one suppressed cell (a fixed point).
*Links* are groups of cells known to hold the same number (the same count shown in two tables):
if one is suppressed, all are. 0 is published as 0 unless chosen as a complement.

Rates whose numerator or denominator is suppressed are suppressed too (:func:`rate_text`).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence

Cell = Hashable

#: What a suppressed count shows, for the default threshold; see :func:`suppressed_label`.
SUPPRESSED = "<10"


def suppressed_label(threshold: int) -> str:
    """The text shown instead of a suppressed count, e.g. ``<10``."""
    return f"<{threshold}"


def primary(values: Mapping[Cell, int], threshold: int) -> set[Cell]:
    """Cells whose count is 1..threshold-1."""
    return {c for c, v in values.items() if v is not None and 1 <= v < threshold}


def suppress(
    values: Mapping[Cell, int],
    lines: Iterable[Sequence[Cell]],
    threshold: int,
    links: Iterable[Iterable[Cell]] = (),
) -> set[Cell]:
    """Return the set of cells to suppress (primary plus complementary), at a fixed point.

    ``lines``: additive groups (parts and their total); every cell of a line must be in ``values``.
    ``links``: groups of cells that always hold the same value (suppressed together).
    Deterministic: ties are broken by the order cells appear in the line.
    """
    if threshold < 1:
        raise ValueError("threshold must be at least 1")
    lines = [list(line) for line in lines]
    links = [list(group) for group in links]
    for line in lines:
        missing = [c for c in line if c not in values]
        if missing:
            raise KeyError(f"line names cells without a value: {missing!r}")
    masked = primary(values, threshold)
    changed = True
    while changed:
        changed = False
        for group in links:
            if any(c in masked for c in group) and not all(c in masked for c in group):
                masked.update(group)
                changed = True
        for line in lines:
            hidden = [c for c in line if c in masked]
            if len(hidden) != 1:
                continue
            candidates = [(i, c) for i, c in enumerate(line) if c not in masked and c != hidden[0]]
            if not candidates:
                continue  # a line of one cell: nothing to add up
            nonzero = [(values[c], i, c) for i, c in candidates if values[c]]
            pool = nonzero or [(values[c], i, c) for i, c in candidates]
            masked.add(min(pool, key=lambda t: (t[0], t[1]))[2])
            changed = True
    return masked


def lines_with_single_suppressed(lines: Iterable[Sequence[Cell]], masked: set[Cell]) -> list[list[Cell]]:
    """Lines that still have exactly one suppressed cell (empty after :func:`suppress`)."""
    return [list(line) for line in lines if sum(1 for c in line if c in masked) == 1]


def grid_lines(
    rows: Sequence[Hashable],
    cols: Sequence[Hashable],
    *,
    row_total: Hashable | None,
    col_total: Hashable | None,
) -> list[list[tuple[Hashable, Hashable]]]:
    """Lines of a (row, col) grid whose last row and/or column hold totals.

    ``rows``/``cols`` include the total keys if present; ``row_total`` is the key of the total
    column (each row adds up to it), ``col_total`` the key of the total row.
    """
    out: list[list[tuple[Hashable, Hashable]]] = []
    if row_total is not None:
        out += [[(r, c) for c in cols] for r in rows]
    if col_total is not None:
        out += [[(r, c) for r in rows] for c in cols]
    return out


def count_text(value: int | None, hidden: bool, threshold: int) -> int | str:
    """Published form of a count: the number, ``<threshold`` when suppressed, '' when unknown."""
    if value is None:
        return ""
    return suppressed_label(threshold) if hidden else int(value)


def rate(num: int | None, den: int | None) -> float | None:
    """num/den as a percentage with one decimal, None when undefined."""
    if num is None or not den:
        return None
    return round(100.0 * num / den, 1)


def rate_text(num: int | None, den: int | None, hidden: bool) -> float | str:
    """Published rate: suppressed ('*') when its numerator or denominator is hidden, '' if undefined."""
    if hidden:
        return "*"
    r = rate(num, den)
    return "" if r is None else r
