"""Contract checks for ingest: which file column is which contract column, and the parse SQL.

:func:`check_columns` resolves a file's header against the contract and the mapping (drops,
renames, alternatives, direct identifiers, missing keys). :func:`parse_select` builds one
set-based SELECT that parses every contract column, hashes the row and, for a row breaking
the contract, gives the reason, first failing column and the raw row as JSON.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from toolkit.contract import (
    DIRECT_IDENTIFIER_PATTERNS,
    FALSE_WORDS,
    ID_WHITESPACE,
    TABLES,
    TRUE_WORDS,
    Column,
    Table,
)
from toolkit.errors import InputFileError
from toolkit.ingest import suggest
from toolkit.ingest.mapping import TableMapping
from toolkit.ingest.readers import SourceFile, lit, q

FULL = (
    "０１２３４５６７８９－．：／＋　ＡＢＣＤＥＦＧＨＩＪＫＬＭＮＯＰＱＲＳＴＵＶＷＸＹＺ"
    "ａｂｃｄｅｆｇｈｉｊｋｌｍｎｏｐｑｒｓｔｕｖｗｘｙｚ＿"
)
HALF = "0123456789-.:/+ ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
TRIM = " \t\r\n\u3000"
INT_TYPES = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "HUGEINT",
    "UHUGEINT",
}
NUM_TYPES = INT_TYPES | {"FLOAT", "DOUBLE", "REAL"}


@dataclass
class Resolution:
    """How a file's columns meet the contract."""

    src_for: dict[str, str] = field(default_factory=dict)  # contract column -> file column
    keep: list[str] = field(default_factory=list)  # file columns kept (not dropped)
    present: list[str] = field(default_factory=list)  # contract columns the file has
    warnings: list[str] = field(default_factory=list)
    n_columns: int = 0  # columns in the file's header

    @property
    def only_contract_columns(self) -> bool:
        """True when every column of the file is a contract column (none dropped or ignored), so a
        raw line of the file holds contract values only and may be kept in quarantine."""
        return len(self.src_for) == len(self.keep) == self.n_columns


def normalise_header(name: str) -> str:
    """A header name as compared for identifiers: NFKC (full-width → ASCII, ｶﾅ → カナ), invisible
    characters removed (zero-width spaces and joiners, BOM, soft hyphen, direction marks, controls),
    whitespace runs as one space, trimmed. Case is kept (camelCase marks word boundaries)."""
    text = unicodedata.normalize("NFKC", name)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cf", "Cc", "Co", "Cn", "Mn"))
    return " ".join(text.split())


def _tokens(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [t for t in re.split(r"[^0-9a-z]+", spaced.casefold()) if t]


def looks_like_identifier(name: str) -> bool:
    """True if a column name looks like a direct identifier (name, address, phone, insurance …).

    The name is normalised first (:func:`normalise_header`), so ``ｎａｍｅ``, ``氏\u200b名`` and
    ``ﾌﾘｶﾞﾅ`` are caught like ``name``, ``氏名`` and ``フリガナ``.
    """
    norm = normalise_header(name)
    toks = _tokens(norm)
    folded = norm.casefold()
    for pat in DIRECT_IDENTIFIER_PATTERNS:
        if pat.isascii():
            ptoks = pat.split("_")
            n = len(ptoks)
            if any(toks[i : i + n] == ptoks for i in range(len(toks) - n + 1)):
                return True
            joined = pat.replace("_", "")
            if len(joined) >= 5 and any(joined in t for t in toks):
                return True  # e.g. "patientname", "phonenumber", "patient_lastname"
            if len(joined) >= 5 and joined in "".join(toks):
                return True  # e.g. "last_name" spelt "last-name", "my.number"
        elif pat in folded:
            return True
    return False


def required_columns(t: Table) -> tuple[str, ...]:
    """Columns a file must have: the key, or ``session_id`` for access_log."""
    return t.key or ("session_id",)


def check_columns(sf: SourceFile, columns: list[str], m: TableMapping) -> Resolution:
    """Resolve file columns to contract columns; InputFileError for a file that must be refused."""
    t = TABLES[sf.table]
    drop = set(m.drop)
    drop_norm = {normalise_header(d).casefold() for d in m.drop}
    res = Resolution(
        n_columns=len(columns),
        keep=[c for c in columns if c not in drop and normalise_header(c).casefold() not in drop_norm],
    )
    lower = {n.lower(): n for n in t.column_names}
    extras = []
    for c in res.keep:
        target = m.columns.get(c)
        if target is None:
            target = c if c in t.column_names else lower.get(c.lower())
            if target is None and c.lower() in t.alternatives:
                target = c.lower()
        if target is not None and target not in t.column_names:
            target = t.alternatives[target]
            if target in res.src_for:
                continue  # drug_code present as well as code_prefix: drug_code wins
        if target is None:
            extras.append(c)
            continue
        if target in res.src_for:
            raise InputFileError(
                str(sf.path),
                f"columns {res.src_for[target]!r} and {c!r} both give {target}; "
                "expected one column per contract column (drop one in the mapping)",
            )
        res.src_for[target] = c
    # contract columns of this table (institutions.name, prescriptions.drug_name) were resolved above;
    # any other identifier-like column is refused, even "name" (patients.name is a patient's name)
    ids = [c for c in extras if looks_like_identifier(c)]
    if ids:
        raise InputFileError(
            str(sf.path),
            f"columns that look like direct identifiers: {', '.join(ids)}. Names, addresses, "
            "phone or insurance numbers must not be ingested: remove them from the export or drop them "
            f"in the mapping (tables: {{{sf.table}: {{drop: [{', '.join(ids)}]}}}})"
            + ("" if m.columns else f"; or {suggest.mapping_init_hint(str(sf.path), sf.table)}"),
        )
    missing = [k for k in required_columns(t) if k not in res.src_for and k not in m.constants]
    if missing:
        raise InputFileError(str(sf.path), _missing_key(sf, t, columns, extras, missing, m))
    if extras:
        named = [c + suggest.did_you_mean(c, sf.table, exclude=res.src_for) for c in extras]
        res.warnings.append(f"ignored columns not in the {sf.table} contract: {', '.join(named)}")
    res.present = [c for c in t.column_names if c in res.src_for or c in m.constants]
    return res


def _missing_key(
    sf: SourceFile, t: Table, columns: list[str], extras: list[str], missing: list[str], m: TableMapping
) -> str:
    """The refusal of a file without its key column: what was expected, close headers, what to do."""
    msg = (
        f"missing key column {', '.join(missing)}; expected a header with the {sf.table} "
        f"columns ({', '.join(t.column_names)}). The header has {len(columns)} column(s) and none is "
        f"{', '.join(missing)}"
    )
    seps = [sep for sep in (";", "\t", "|") if len(columns) == 1 and sep in columns[0]]
    if seps:
        return f"{msg}: the header is one column holding {seps[0]!r}: expected comma-separated CSV"
    close = [(c, k) for k in missing for c in extras if suggest.candidates(c, sf.table, n=1) == [k]]
    if suggest.looks_like_data(columns) and not close:
        return f"{msg}: the first line looks like data, not a header: is the header line missing?"
    shown = ", ".join(columns[:12]) + (f", … ({len(columns)} in all)" if len(columns) > 12 else "")
    msg += f". The header read: {shown}"
    if close:
        c, k = close[0]
        msg += (
            f". `{c}` looks like it: did you mean `{k}`? Rename it in a mapping file "
            f"(tables: {{{sf.table}: {{columns: {{{c!r}: {k}}}}}}}) and ingest with --mapping"
        )
    else:
        msg += ". Does the mapping need a `columns:` rename (e.g. a vendor export with Japanese headers)?"
    if not m.columns:
        msg += f"; {suggest.mapping_init_hint(str(sf.path), sf.table)}"
    return msg


def _text(expr: str, vmap: dict[str, str]) -> str:
    """Text of a raw value: empty → NULL; a mapping value map applied to the trimmed value."""
    v = f"NULLIF(CAST({expr} AS VARCHAR), '')"
    if vmap:
        cases = " ".join(f"WHEN {lit(k)} THEN {lit(val)}" for k, val in vmap.items())
        v = f"(CASE trim({v}, {lit(TRIM)}) {cases} ELSE {v} END)"
    return v


def _id_text(v: str) -> str:
    """An id's text stripped of :data:`~toolkit.contract.ID_WHITESPACE`: NULL if nothing is left,
    so the result is NULL or not blank (a key needs no blank check after it).

    ``trim()`` with a character set is slow (1.4 s per 4M values on the benchmark VM), so only an
    id that does not start and end in visible ASCII goes through it; ``right(v, 1)`` is the last
    code point (a slice ``v[-1:]`` took half as long again)."""
    return (
        f"CASE WHEN ord({v}) BETWEEN 33 AND 126 AND ord(right({v}, 1)) BETWEEN 33 AND 126 "
        f"THEN {v} ELSE NULLIF(trim({v}, {lit(ID_WHITESPACE)}), '') END"
    )


def _clean(v: str) -> str:
    """The slow-path normalisation: full-width digits/signs to ASCII, whitespace (incl. 全角) trimmed."""
    return f"NULLIF(trim(translate({v}, {lit(FULL)}, {lit(HALF)}), {lit(TRIM)}), '')"


def _in(words: frozenset[str] | tuple[str, ...]) -> str:
    return "(" + ", ".join(lit(w) for w in sorted(words)) + ")"


def _fast(c: Column, v: str, m: TableMapping) -> str:
    """Parse of already-clean text ``v`` (NULL when it does not parse)."""
    if c.type == "enum":
        return f"CASE WHEN lower({v}) IN {_in(c.enum)} THEN lower({v}) END"
    if c.type == "bool":
        return (
            f"CASE WHEN lower({v}) IN {_in(TRUE_WORDS)} THEN TRUE "
            f"WHEN lower({v}) IN {_in(FALSE_WORDS)} THEN FALSE END"
        )
    if c.type == "int":  # DuckDB alone would accept 2.5 (→ 3), 1_000 and 0x10
        return f"CASE WHEN regexp_full_match({v}, '\\s*[+-]?[0-9]+(\\.0*)?\\s*') THEN TRY_CAST({v} AS BIGINT) END"
    if c.type == "decimal":  # DuckDB alone would accept 1_000
        return f"CASE WHEN strpos({v}, '_') = 0 THEN TRY_CAST({v} AS DECIMAL(18,4)) END"
    if c.type == "date":
        iso = (
            f"CASE WHEN regexp_full_match({v}, '[0-9]{{4}}-[0-9]{{1,2}}-[0-9]{{1,2}}') "
            f"THEN TRY_CAST({v} AS DATE) END"
        )
        if m.date_format:
            return f"coalesce(CAST(TRY_STRPTIME({v}, {lit(m.date_format)}) AS DATE), {iso})"
        return iso
    if c.type == "timestamptz":
        # ISO 8601 date AND time (YYYY-MM-DD, T or space, HH:MM…); no offset → session TimeZone
        # (Asia/Tokyo). DuckDB alone would accept 'epoch', 'infinity', '-infinity', years past
        # 9999 and a date alone (as midnight, which would make a date-only consent_at look on time)
        iso = (
            f"CASE WHEN {v} GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9][T ][0-9][0-9]:[0-9][0-9]*' "
            f"THEN TRY_CAST({v} AS TIMESTAMPTZ) END"
        )
        if m.timestamp_format:
            return f"coalesce(TRY_CAST(TRY_STRPTIME({v}, {lit(m.timestamp_format)}) AS TIMESTAMPTZ), {iso})"
        return iso
    raise ValueError(c.type)


def _parse(c: Column, v: str, m: TableMapping) -> str:
    """Parse of text ``v``: the fast parse, else (only for rows where it fails) of its cleaned text."""
    if c.type == "str":
        return v
    if c.type == "enum":
        return (
            f"CASE WHEN {v} IS NULL THEN NULL WHEN {v} IN {_in(c.enum)} THEN {v} "
            f"ELSE {_fast(c, _clean(v), m)} END"
        )
    if c.type == "bool":
        return (
            f"CASE WHEN {v} IS NULL THEN NULL WHEN {v} IN {_in(TRUE_WORDS)} THEN TRUE "
            f"WHEN {v} IN {_in(FALSE_WORDS)} THEN FALSE ELSE {_fast(c, _clean(v), m)} END"
        )
    # coalesce evaluates its second argument only for the rows its first left NULL (a CASE
    # repeating the fast parse in its condition and its branch would evaluate it twice); the
    # outer CASE keeps empty values out of it, else every NULL went through the slow path too
    # (a CSV's sessions took twice as long: 8.7 s of CPU per 200k rows instead of 4.0 s)
    return f"CASE WHEN {v} IS NOT NULL THEN coalesce({_fast(c, v, m)}, {_fast(c, _clean(v), m)}) END"


def _native(c: Column, expr: str, st: str) -> str | None:
    """A parse expression using the file's own type, when it already fits the contract type."""
    st = st.upper()
    if c.type == "bool" and st == "BOOLEAN":
        return expr
    if c.type == "int" and st in INT_TYPES:
        return f"TRY_CAST({expr} AS BIGINT)"
    if c.type == "decimal" and (st in NUM_TYPES or st.startswith("DECIMAL")):
        return f"TRY_CAST({expr} AS DECIMAL(18,4))"
    if c.type == "date" and st == "DATE":
        return expr
    if c.type == "timestamptz" and st.startswith("TIMESTAMP"):
        return f"CAST({expr} AS TIMESTAMPTZ)"  # a naive TIMESTAMP is Japan time (session TimeZone)
    return None


def _sql_bound(c: Column, b: int | float | str) -> str:
    """A bound of ``c`` as an SQL literal of its type."""
    if c.type in ("date", "timestamptz"):
        return f"CAST({lit(str(b))} AS {c.duckdb_type})"
    return repr(b)


def _in_range(c: Column, u: str) -> str | None:
    """SQL true when the parsed value ``u`` lies in the column's contract range; None if unbounded."""
    lo, hi = c.bounds
    parts = ([f"{u} >= {_sql_bound(c, lo)}"] if lo is not None else []) + (
        [f"{u} <= {_sql_bound(c, hi)}"] if hi is not None else []
    )
    return " AND ".join(parts) or None


def _reason(
    t: Table, c: Column, v: str, p: str, m: TableMapping, native: bool, u: str | None = None
) -> tuple[str, str]:
    """(error flag SQL, reason text SQL) of one column; the flag is cheap except for failing rows.

    ``u``: the parsed value before the range check (ranged columns), to tell "out of range" from
    "not a …".
    """
    shown = "chr(39) || left(CAST(" + v + " AS VARCHAR), 60) || chr(39)"
    what = {
        "bool": "is not a boolean (true/false, 1/0, yes/no, はい/いいえ, 有/無)",
        "int": "is not an integer",
        "decimal": "is not a number",
        "date": f"is not a date ({m.date_format or 'YYYY-MM-DD'})",
        "timestamptz": f"is not a timestamp ({m.timestamp_format or 'ISO 8601'})",
        "enum": "is not one of " + ", ".join(c.enum),
        "str": "is not text",
    }[c.type]
    text = f"{lit(c.name + ': ')} || {shown} || {lit(' ' + what)}"
    if u is not None:
        out_of_range = f"is out of range (expected {_what_type(c)} {c.range_text()})"
        text = (
            f"{lit(c.name + ': ')} || {shown} || CASE WHEN {u} IS NOT NULL THEN {lit(' ' + out_of_range)} "
            f"ELSE {lit(' ' + what)} END"
        )
    blank = "FALSE" if native else f"{_clean(f'CAST({v} AS VARCHAR)')} IS NULL"
    if c.name in required_columns(t):
        return (
            f"({p} IS NULL)",
            f"CASE WHEN {v} IS NULL OR {blank} THEN {lit(c.name + ': missing key')} ELSE {text} END",
        )
    return f"CASE WHEN {p} IS NOT NULL OR {v} IS NULL THEN FALSE ELSE NOT {blank} END", text


def _what_type(c: Column) -> str:
    return {"int": "an integer", "decimal": "a number", "date": "a date", "timestamptz": "a timestamp"}.get(
        c.type, "a value"
    )


def parse_select(
    t: Table,
    res: Resolution,
    types: dict[str, str],
    m: TableMapping,
    relation: str,
    line_expr: str,
    file_idx: int,
    source_file: str,
) -> str:
    """SELECT producing the incoming-table row of every record of ``relation``.

    Layers: ``__v`` text (or native typed value) per contract column, ``__u`` parsed value of a
    column with a contract range (:attr:`toolkit.contract.Column.bounds`), ``__p`` parsed value
    (NULL when out of range, so the row is quarantined with the reason);
    then the row hash (DuckDB's 64-bit ``hash`` of the typed values, a UBIGINT) and, only for rows
    with a failing column, the reason and raw JSON.
    """
    raw = [f"{q(c)} AS __r{i}" for i, c in enumerate(res.keep)]
    rawname = {c: f"__r{i}" for i, c in enumerate(res.keep)}
    texts, parsed, ranged, unranged, conds, reasons, nulls = [], [], [], [], [], [], []
    trimmed: set[int] = set()  # id columns: their text is NULL or not blank (:func:`_id_text`)
    for i, c in enumerate(t.columns):
        vmap = m.values.get(c.name, {})
        v, pv = f"__v{i}", f"__p{i}"
        native = None
        if c.name in res.src_for:
            src = rawname[res.src_for[c.name]]
            st = types.get(res.src_for[c.name], "VARCHAR")
            if not vmap and st.upper() != "VARCHAR":
                native = _native(c, v, st)
            text = src if native else _text(src, vmap)
            if c.is_id:  # ' P1 ' is P1 (documented); look-alikes that remain are reported
                text = _id_text(text)
                trimmed.add(i)
            texts.append(f"{text} AS {v}")
        elif c.name in m.constants:
            texts.append(f"{_text(lit(m.constants[c.name]), vmap)} AS {v}")
        else:
            texts.append(f"CAST(NULL AS VARCHAR) AS {v}")
            if c.name not in required_columns(t):
                nulls.append(i)
        pexpr = native or _parse(c, v, m)
        if i in nulls:
            pexpr = f"CAST(NULL AS {c.duckdb_type})"
        elif not native and i not in trimmed and c.name in required_columns(t):
            pexpr = f"CASE WHEN trim({v}, {lit(TRIM)}) = '' THEN NULL ELSE {pexpr} END"
        check = None if i in nulls else _in_range(c, f"__u{i}")
        if check is None:
            parsed.append(f"{pexpr} AS {pv}")
            ranged.append(pv)
        else:  # out of range → NULL parse, so the row is quarantined (reason: out of range)
            parsed.append(f"{pexpr} AS __u{i}")
            unranged.append(f"__u{i}")
            ranged.append(f"__u{i}, CASE WHEN {check} THEN __u{i} END AS {pv}")
        if i in nulls:
            continue
        cond, text = _reason(t, c, v, pv, m, native is not None, None if check is None else f"__u{i}")
        conds.append((c.name, cond))
        reasons.append(text)
    sel_raw = "".join(f", __r{i}" for i in range(len(res.keep)))
    vs = "".join(f", __v{i}" for i in range(len(t.columns)))
    ps = "".join(f", __p{i}" for i in range(len(t.columns)))
    us = "".join(f", {u}" for u in unranged)
    es = "".join(f", {cond} AS __e{k}" for k, (_, cond) in enumerate(conds))
    out_cols = ", ".join(f"__p{i} AS {q(c.name)}" for i, c in enumerate(t.columns))
    h = ", ".join(f"__p{i}" for i in range(len(t.columns)))
    anyerr = " OR ".join(f"__e{k}" for k in range(len(conds))) or "FALSE"
    errcol = (
        "coalesce("
        + ", ".join(f"CASE WHEN __e{k} THEN {lit(n)} END" for k, (n, _) in enumerate(conds))
        + ", NULL)"
    )
    reason = ", ".join(f"CASE WHEN __e{k} THEN {text} END" for k, text in enumerate(reasons))
    # a quarantined row keeps its contract columns only: a column outside the contract (ignored
    # with a warning) may hold anything, so its values are never stored, quarantine included
    contract_src = set(res.src_for.values())
    rawobj = ", ".join(f"{lit(c)}, __r{i}" for i, c in enumerate(res.keep) if c in contract_src)
    rawjson = f"CAST(json_object({rawobj}) AS VARCHAR)" if rawobj else "'{}'"
    return f"""
SELECT {file_idx} AS _file_idx, _line, {out_cols}, hash({h}) AS _row_hash,
       CASE WHEN _bad THEN concat_ws('; ', {reason}) END AS _reason,
       CASE WHEN _bad THEN {errcol} END AS _errcol,
       CASE WHEN _bad THEN {rawjson} END AS _raw, NULL AS _dup, {lit(source_file)} AS _source_file
FROM (
  SELECT *, ({anyerr}) AS _bad FROM (
    SELECT _line{sel_raw}{vs}{us}{ps}{es} FROM (
     SELECT _line{sel_raw}{vs}, {", ".join(ranged)} FROM (
      SELECT _line{sel_raw}{vs}, {", ".join(parsed)}
      FROM (SELECT {line_expr} AS _line{sel_raw}, {", ".join(texts)}
            FROM (SELECT *{", " + ", ".join(raw) if raw else ""} FROM {relation}) __src) __n) __pu) __pp) __pe) __q"""
