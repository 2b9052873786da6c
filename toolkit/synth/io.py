"""Column arrays → Arrow tables → Parquet / CSV files, for the generator.

In-memory convention (compact NumPy columns, NULL without masks):
``bool`` int8 (-1 = NULL), ``timestamptz`` int64 seconds of Japan wall time (``NULL_I``),
``date`` int64 days since 1970-01-01 (``NULL_I``), ``int`` int64 (``NULL_I``),
``decimal`` float64 (NaN), ``str``/``enum`` object arrays (None).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from toolkit.contract import TABLES
from toolkit.store.files import open_owner_only

NULL_I = np.iinfo(np.int64).min
JST_SECONDS = 9 * 3600
TZ = "+09:00"


def _arrow_type(ctype: str, mode: str) -> pa.DataType:
    if ctype == "bool":
        return pa.bool_()
    if ctype == "timestamptz":
        return (
            pa.timestamp("s", tz=TZ)
            if mode == "parquet"
            else (pa.timestamp("s") if mode == "eval" else pa.string())
        )
    if ctype == "date":
        return pa.date32()
    if ctype == "int":
        return pa.int64()
    if ctype == "decimal":
        return pa.float64()
    return pa.string()


def schema(table: str, mode: str) -> pa.Schema:
    """Arrow schema of a contract table (``mode``: parquet, csv or eval)."""
    return pa.schema([(c.name, _arrow_type(c.type, mode)) for c in TABLES[table].columns])


def _iso(seconds: np.ndarray) -> np.ndarray:
    txt = np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s")
    return np.char.add(txt, TZ)


def column_array(arr: np.ndarray, ctype: str, mode: str) -> pa.Array:
    """One NumPy column (generator convention) as an Arrow array."""
    if ctype == "bool":
        return pa.array(arr == 1, type=pa.bool_(), mask=arr < 0)
    if ctype == "timestamptz":
        mask = arr == NULL_I
        if mode == "csv":
            safe = np.where(mask, 0, arr)
            return pa.array(_iso(safe), type=pa.string(), mask=mask)
        vals = arr - JST_SECONDS if mode == "parquet" else arr
        return pa.array(np.where(mask, 0, vals), type=_arrow_type(ctype, mode), mask=mask)
    if ctype == "date":
        mask = arr == NULL_I
        return pa.array(np.where(mask, 0, arr).astype(np.int32), type=pa.date32(), mask=mask)
    if ctype == "int":
        mask = arr == NULL_I
        return pa.array(np.where(mask, 0, arr), type=pa.int64(), mask=mask)
    if ctype == "decimal":
        return pa.array(arr, type=pa.float64(), from_pandas=True)
    return pa.array(arr, type=pa.string(), from_pandas=True)


def to_arrow(table: str, cols: dict[str, np.ndarray], mode: str) -> pa.Table:
    """The contract table ``table`` from generator columns (every contract column present)."""
    t = TABLES[table]
    arrays = [column_array(cols[c.name], c.type, mode) for c in t.columns]
    return pa.Table.from_arrays(arrays, schema=schema(table, mode))


class Sink:
    """Streams one table into ``<out>/<table>.parquet`` (row group per chunk) or ``.csv``."""

    def __init__(self, out_dir: Path, table: str, fmt: str) -> None:
        self.table = table
        self.fmt = fmt
        self.rows = 0
        self.path = out_dir / f"{table}.{fmt}"
        self._writer: pq.ParquetWriter | None = None
        self._files = contextlib.ExitStack()
        self._fh = self._files.enter_context(open_owner_only(self.path, "wb"))  # closed in close()
        self._header = True
        if fmt == "parquet":
            self._writer = pq.ParquetWriter(self._fh, schema(table, "parquet"), compression="zstd")

    def write(self, cols: dict[str, np.ndarray]) -> None:
        """Append one chunk of rows."""
        tab = to_arrow(self.table, cols, self.fmt)
        if self.table == "sessions":
            tab = tab.sort_by("session_id")  # ids follow time within a chunk
        self.rows += tab.num_rows
        if self._writer is not None:
            self._writer.write_table(tab, row_group_size=256_000)
        else:
            opts = pacsv.WriteOptions(include_header=self._header, quoting_style="needed")
            pacsv.write_csv(tab, self._fh, write_options=opts)
            self._header = False

    def close(self) -> None:
        """Finish the file (a CSV with no rows still gets its header)."""
        if self._writer is not None:
            self._writer.close()
        elif self._header:
            empty = pa.Table.from_batches([], schema=schema(self.table, "csv"))
            pacsv.write_csv(empty, self._fh, write_options=pacsv.WriteOptions(quoting_style="needed"))
        self._files.close()
