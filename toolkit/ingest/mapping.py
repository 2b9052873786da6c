"""Vendor mapping files: column renames, value maps, date formats, drops, constants, encoding.

Format (YAML)::

    vendor: "MediLink Cloud export v3"          # free text
    encoding: cp932                              # optional default for every table
    tables:
      sessions:                                  # contract table
        files: ["ml_sessions*.csv"]              # optional glob(s) in SOURCE holding this table
        encoding: cp932                          # optional
        columns: {受診ID: session_id}            # vendor column -> contract column
        drop: [患者氏名, 電話番号]                 # removed before anything else
        values: {kind: {オンライン診療: online_care}}   # per contract column: vendor -> contract value
        timestamp_format: "%Y/%m/%d %H:%M"       # strptime format (no offset -> +09:00)
        date_format: "%Y/%m/%d"
        constants: {platform: dedicated}         # contract column filled with a constant

The file is validated on load; every problem raises :class:`MappingError` naming the key path
and the valid keys.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolkit.contract import TABLES
from toolkit.errors import UserError
from toolkit.ingest.readers import normalise_encoding
from toolkit.safe_yaml import YamlFileError, load_file

TOP_KEYS = ("vendor", "encoding", "tables")
TABLE_KEYS = (
    "files",
    "encoding",
    "columns",
    "drop",
    "values",
    "timestamp_format",
    "date_format",
    "constants",
)


class MappingError(UserError):
    """The mapping file is not valid; the message names the file and key path."""


@dataclass
class TableMapping:
    """The mapping of one contract table."""

    files: list[str] = field(default_factory=list)
    encoding: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    drop: list[str] = field(default_factory=list)
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    timestamp_format: str | None = None
    date_format: str | None = None
    constants: dict[str, str] = field(default_factory=dict)


@dataclass
class Mapping:
    """A whole mapping file (empty when no file is given)."""

    vendor: str = ""
    encoding: str | None = None
    tables: dict[str, TableMapping] = field(default_factory=dict)
    path: str | None = None

    def table(self, name: str) -> TableMapping:
        """The mapping of table ``name`` (an empty one when the file does not mention it)."""
        return self.tables.get(name) or TableMapping(encoding=self.encoding)

    def globs(self) -> dict[str, list[str]]:
        """Contract table → ``files`` globs, for tables that declare them."""
        return {t: m.files for t, m in self.tables.items() if m.files}


def _unknown(where: str, key: Any, valid: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(str(key), [str(v) for v in valid], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{where}: unknown key {key!r}{hint}; valid keys: {', '.join(valid)}"


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a mapping of names, got {type(value).__name__}")
    out = {}
    for k, v in value.items():
        if isinstance(v, (dict, list)) or k is None:
            raise ValueError(f"{where}: {k!r} must map to a single value")
        out[str(k)] = _scalar(v)
    return out


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "" if v is None else str(v)


def _str_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise ValueError(f"{where}: expected a list of names")
    return [str(v) for v in value]


def _check_format(fmt: Any, where: str) -> str | None:
    if fmt is None:
        return None
    if not isinstance(fmt, str) or "%" not in fmt:
        raise ValueError(f'{where}: expected a strptime format such as "%Y/%m/%d %H:%M"')
    return fmt


def _table(name: str, raw: Any, default_encoding: str | None) -> TableMapping:
    where = f"tables.{name}"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping with keys {', '.join(TABLE_KEYS)}")
    for key in raw:
        if key not in TABLE_KEYS:
            raise ValueError(_unknown(where, key, TABLE_KEYS))
    t = TABLES[name]
    valid_cols = set(t.column_names) | set(t.alternatives)
    columns = _str_map(raw.get("columns"), f"{where}.columns")
    for vendor, target in columns.items():
        if target not in valid_cols:
            raise ValueError(
                f"{where}.columns: {vendor!r} is mapped to {target!r}, which is not a column of "
                f"{name}; contract columns: {', '.join(sorted(valid_cols))}"
            )
    targets = list(columns.values())
    dup = sorted({c for c in targets if targets.count(c) > 1})
    if dup:
        raise ValueError(f"{where}.columns: several vendor columns map to {', '.join(dup)}")
    values: dict[str, dict[str, str]] = {}
    raw_values = raw.get("values") or {}
    if not isinstance(raw_values, dict):
        raise ValueError(f"{where}.values: expected column: {{vendor value: contract value}}")
    for col, vmap in raw_values.items():
        if col not in valid_cols:
            raise ValueError(_unknown(f"{where}.values", col, sorted(valid_cols)))
        values[str(col)] = _str_map(vmap, f"{where}.values.{col}")
        c = t.column(TABLES[name].alternatives.get(col, col)) if col not in t.column_names else t.column(col)
        if c.enum:
            bad = sorted({v for v in values[str(col)].values() if v not in c.enum})
            if bad:
                raise ValueError(
                    f"{where}.values.{col}: {', '.join(map(repr, bad))} is not one of {', '.join(c.enum)}"
                )
    constants = _str_map(raw.get("constants"), f"{where}.constants")
    for col in constants:
        if col not in valid_cols:
            raise ValueError(_unknown(f"{where}.constants", col, sorted(valid_cols)))
    try:
        enc = normalise_encoding(raw.get("encoding")) or default_encoding
    except ValueError as exc:
        raise ValueError(f"{where}.encoding: {exc}") from None
    return TableMapping(
        files=_str_list(raw.get("files"), f"{where}.files"),
        encoding=enc,
        columns=columns,
        drop=_str_list(raw.get("drop"), f"{where}.drop"),
        values=values,
        timestamp_format=_check_format(raw.get("timestamp_format"), f"{where}.timestamp_format"),
        date_format=_check_format(raw.get("date_format"), f"{where}.date_format"),
        constants=constants,
    )


def parse_mapping(doc: Any, path: str = "<mapping>") -> Mapping:
    """Validate a loaded YAML document; MappingError naming ``path`` and the key path."""
    try:
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise ValueError(f"expected a mapping with keys {', '.join(TOP_KEYS)}")
        for key in doc:
            if key not in TOP_KEYS:
                raise ValueError(_unknown("(top level)", key, TOP_KEYS))
        try:
            enc = normalise_encoding(doc.get("encoding"))
        except ValueError as exc:
            raise ValueError(f"encoding: {exc}") from None
        tables_raw = doc.get("tables") or {}
        if not isinstance(tables_raw, dict):
            raise ValueError("tables: expected a mapping of contract table names")
        tables = {}
        for name, raw in tables_raw.items():
            if name not in TABLES:
                raise ValueError(_unknown("tables", name, list(TABLES)))
            tables[name] = _table(name, raw, enc)
        return Mapping(vendor=_scalar(doc.get("vendor")), encoding=enc, tables=tables, path=path)
    except ValueError as exc:
        raise MappingError(f"{path}: invalid mapping: {exc}") from None


def load_mapping(path: str | Path | None) -> Mapping:
    """Read and validate a mapping file; an empty :class:`Mapping` for None."""
    if path is None:
        return Mapping()
    p = Path(path)
    try:
        doc = load_file(p, "mapping file")
    except YamlFileError as exc:
        raise MappingError(str(exc)) from None
    return parse_mapping(doc, str(p))
