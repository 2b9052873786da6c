"""JIS X 0402 municipality codes (市区町村コード / 全国地方公共団体コード): check digit, SQL, names.

A code is 5 digits (2 for the prefecture, 3 for the municipality), or 6 with a check digit: the
five digits weighted 6, 5, 4, 3, 2, summed; the check digit is the last digit of
``11 − (sum mod 11)`` (remainder 0 → 1, remainder 1 → 0). Examples: 131016 千代田区, 131041
新宿区 (remainder 0), 131130 渋谷区 (remainder 1), 011002 札幌市, 271004 大阪市.

A code with a wrong check digit or a malformed one is a data-quality finding (``dq.bad_municipality_code``)
and counts as an *unknown* location in the annual report; the row is not quarantined (it holds an
encounter the audit needs).
"""

from __future__ import annotations

import csv
import functools
import re

from toolkit.resources import PACKAGE_DIR

MUNICIPALITIES_CSV = PACKAGE_DIR / "data" / "municipalities.csv"
_WEIGHTS = (6, 5, 4, 3, 2)
_CODE_RE = re.compile(r"[0-9]{5,6}")


def check_digit(code5: str) -> int:
    """The JIS X 0402 check digit of a 5-digit code (``'13101'`` → 6)."""
    if not re.fullmatch(r"[0-9]{5}", code5):
        raise ValueError(f"not a 5-digit municipality code: {code5!r}")
    total = sum(int(d) * w for d, w in zip(code5, _WEIGHTS, strict=True))
    return (11 - total % 11) % 10


def with_check_digit(code5: str) -> str:
    """The 6-digit form of a 5-digit code (``'13101'`` → ``'131016'``)."""
    return code5 + str(check_digit(code5))


def normalise(code: str | None) -> str | None:
    """The 5-digit code of a valid code (5 digits, or 6 with a correct check digit); None otherwise."""
    if code is None:
        return None
    text = str(code).strip()
    if not _CODE_RE.fullmatch(text):
        return None
    if len(text) == 6 and check_digit(text[:5]) != int(text[5]):
        return None
    return text[:5]


def is_valid(code: str | None) -> bool:
    """True for a well-formed code whose check digit (when given) is right."""
    return normalise(code) is not None


def valid_sql(col: str) -> str:
    """SQL: TRUE when ``col`` (VARCHAR, not NULL) is a valid code, as :func:`is_valid`."""
    d = [f"TRY_CAST(substr(trim({col}), {i}, 1) AS INTEGER)" for i in range(1, 7)]
    total = " + ".join(f"{w} * {x}" for w, x in zip(_WEIGHTS, d[:5], strict=True))
    return (
        f"(regexp_full_match(trim({col}), '[0-9]{{5}}') OR (regexp_full_match(trim({col}), '[0-9]{{6}}') "
        f"AND (11 - ({total}) % 11) % 10 = {d[5]}))"
    )


def normalised_sql(col: str) -> str:
    """SQL: the 5-digit code of ``col`` when valid, else NULL (as :func:`normalise`)."""
    return f"CASE WHEN {col} IS NOT NULL AND {valid_sql(col)} THEN substr(trim({col}), 1, 5) END"


@functools.cache
def _names() -> dict[str, tuple[str, str]]:
    with open(MUNICIPALITIES_CSV, encoding="utf-8", newline="") as fh:
        return {r["code"][:5]: (r["prefecture"], r["name"]) for r in csv.DictReader(fh)}


def name(code5: str) -> str:
    """``'東京都千代田区'`` for a known code, else the code itself (the shipped table is small)."""
    found = _names().get(code5)
    return f"{found[0]}{found[1]}" if found else code5


def label(code5: str) -> str:
    """``'東京都千代田区 (131016)'``; the 6-digit code alone when the name is unknown."""
    full = with_check_digit(code5)
    found = _names().get(code5)
    return f"{found[0]}{found[1]} ({full})" if found else f"{full} (名称不明 / name not in the shipped table)"
