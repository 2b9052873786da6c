"""The record list: one page of violating records (ids only) with their review state, paging, a CSV
of the whole list, and the review panel (:mod:`toolkit.dashboard.marking`) that marks the records
chosen on the page. The states of a page are read afresh on every showing (marks change; the run's
records do not), for that page's keys only.
"""

from __future__ import annotations

import html
import os
from datetime import datetime
from pathlib import Path

import duckdb
import ipywidgets as widgets
import pandas as pd

from toolkit.dashboard import queries as q
from toolkit.dashboard.marking import ReviewPanel, state_text
from toolkit.review import marks
from toolkit.store import files

STATUS_LABELS = {"violated": "違反 violated", "not_evidenced": "記録なし not evidenced"}
HEADERS = {
    "rule_id": "規則 rule",
    "entity": "対象の種類 entity",
    "entity_id": "ID",
    "status": "結果 finding",
    "institution_id": "医療機関 institution",
    "doctor_id": "医師 doctor",
    "month": "月 month",
    "review": "状態 review state",
}
CSV_HEADER = tuple(q.RECORD_COLUMNS)


def records_html(page: pd.DataFrame, page_marks: dict | None = None) -> str:
    """The page as an escaped HTML table (class ``ocaudit-records``; one ``td.entity-id`` per record).

    ``page_marks``: :func:`toolkit.dashboard.queries.page_marks` of the page; the last column shows
    each record's review state (``td.review-state``) and who marked it with the note, escaped
    (staff free text).
    """
    page_marks = page_marks or {}
    head = "".join(f"<th>{html.escape(HEADERS[c])}</th>" for c in (*q.RECORD_COLUMNS, "review"))
    rows = []
    for rec in page.itertuples(index=False):
        mark = page_marks.get((rec.rule_id, rec.entity, rec.entity_id))
        cells = []
        for col, val in zip(q.RECORD_COLUMNS, rec, strict=True):
            text = "—" if val is None or (isinstance(val, float) and pd.isna(val)) else str(val)
            if col == "status":
                text = STATUS_LABELS.get(text, text)
            cls = col.replace("_", "-") + (" status" if col == "status" else "")
            cells.append(f'<td class="{cls}">{html.escape(text)}</td>')
        state = "open" if mark is None else str(mark["state"])
        by = ""
        if mark is not None:
            who_note = str(mark["marked_by"] or "") + (f": {mark['note']}" if mark["note"] else "")
            by = f'<br><span class="note mark-note">{html.escape(who_note)}</span>'
        still = mark is not None and bool(mark["still_present"])
        cls = f"review-state state-{state}" + (" still-present" if still else "")
        cells.append(f'<td class="{cls}">{html.escape(state_text(state, still))}{by}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<table class="ocaudit-records"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def write_records_csv(db_path: str | os.PathLike[str], sel: q.Selection, path: str | os.PathLike[str]) -> int:
    """Write every record of ``sel`` (ids only) to ``path``: formula-safe CSV, mode 0600; the row count."""
    count = 0

    def rows():  # type: ignore[no-untyped-def]
        nonlocal count
        yield CSV_HEADER
        with q.reading(db_path) as con:
            for row in q.record_batches(con, sel):
                count += 1
                yield row

    files.write_rows_csv(rows(), path)
    return count


class RecordList:
    """A paged list of the selection's violating records with a CSV button.

    ``export_dir`` is where the CSV button writes (created 0700 on first use).
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        export_dir: str | os.PathLike[str],
        page_size: int = q.PAGE_SIZE,
    ):
        self.db_path = db_path
        self.export_dir = Path(export_dir)
        self.page_size = page_size
        self.selection: q.Selection | None = None
        self.page = 0
        self.total = 0
        self.current = pd.DataFrame(columns=list(q.RECORD_COLUMNS))
        self._seen: dict[tuple, object] = {}
        self.header = widgets.HTML()
        self.table = widgets.HTML()
        self.prev_button = widgets.Button(description="◀ 前へ previous", layout=widgets.Layout(width="150px"))
        self.next_button = widgets.Button(description="次へ next ▶", layout=widgets.Layout(width="150px"))
        self.csv_button = widgets.Button(
            description="CSVに保存 save CSV", layout=widgets.Layout(width="190px")
        )
        self.csv_status = widgets.HTML()
        self.review = ReviewPanel(db_path, on_saved=self._after_save)
        self.state_filter = widgets.Dropdown(
            options=[("（すべて） all", "")] + [(label, v) for v, label in q.REVIEW_FILTERS.items()],
            value="",
            description="状態で絞る review state",
            layout=widgets.Layout(width="460px"),
            style={"description_width": "160px"},
        )
        self.state_filter.add_class("ocaudit-state-filter")
        self.state_filter.observe(lambda _c: self._base is not None and self.show(self._base), names="value")
        self._base: q.Selection | None = None
        #: the records chosen for marking (shown in the review panel)
        self.picker = self.review.picker
        self.prev_button.on_click(lambda _b: self.go(self.page - 1))
        self.next_button.on_click(lambda _b: self.go(self.page + 1))
        self.csv_button.on_click(lambda _b: self.save_csv())
        self.widget = widgets.VBox(
            [
                self.header,
                self.state_filter,
                self.table,
                widgets.HBox([self.prev_button, self.next_button, self.csv_button]),
                self.csv_status,
                self.review.widget,
            ]
        )
        self.widget.add_class("ocaudit-record-list")

    def _remember(self, key: tuple, value: object) -> None:
        """Keep a count or page: a stored run's violations never change (the run store is append-only)."""
        if len(self._seen) >= 128:
            self._seen.clear()
        self._seen[key] = value

    @property
    def pages(self) -> int:
        """Number of pages of the current selection (at least 1)."""
        return max(1, -(-self.total // self.page_size))

    def show(self, sel: q.Selection, page: int = 0, con: duckdb.DuckDBPyConnection | None = None) -> None:
        """Show page ``page`` of ``sel``'s records (narrowed by the review-state filter, if one is set).

        ``con``: the read-only connection of the interaction, when the caller holds one.
        """
        self._base = sel
        with q.reading_or(self.db_path, con) as con:
            has_marks = marks.has_marks_table(con)
            wanted = self.state_filter.value or None
            if not has_marks and wanted not in (None, "open"):
                wanted = "none"  # nothing was ever marked: no record is in a marked state
            sel = sel.with_(review_state=None if wanted == "open" and not has_marks else wanted)
            self.selection = sel
            if sel.review_state == "none":
                self.total = 0
            elif sel.review_state is not None:  # marks change: counted afresh
                self.total = q.record_count(con, sel)
            else:
                if ("count", sel) not in self._seen:
                    self._remember(("count", sel), q.record_count(con, sel))
                self.total = self._seen[("count", sel)]
            self.csv_status.value = ""
            self.go(page, con)

    def _after_save(self) -> None:
        if self.selection is not None and self.selection.review_state is not None:
            self.show(self._base, self.page)  # type: ignore[arg-type]
        else:
            self.go(self.page)

    def go(self, page: int, con: duckdb.DuckDBPyConnection | None = None) -> None:
        """Show page ``page`` (clamped to the pages there are); ``con`` as in :meth:`show`."""
        if self.selection is None:
            return
        with q.reading_or(self.db_path, con) as con:
            self._go(page, con)

    def _go(self, page: int, con: duckdb.DuckDBPyConnection) -> None:
        self.page = min(max(0, page), self.pages - 1)
        key = ("page", self.selection, self.page)
        if self.selection.review_state == "none":
            self.current = pd.DataFrame(columns=list(q.RECORD_COLUMNS))
        elif self.selection.review_state is not None:
            self.current = q.record_page(con, self.selection, self.page, self.page_size)
        else:
            if key not in self._seen:
                self._remember(key, q.record_page(con, self.selection, self.page, self.page_size))
            self.current = self._seen[key]
        page = self.current
        keys = list(dict.fromkeys(zip(page["rule_id"], page["entity"], page["entity_id"], strict=True)))
        # read afresh each time: marks change, the run's records do not
        page_marks = q.page_marks(con, self.selection.run_id, keys)
        counts = q.review_counts(con, self.selection)
        self.table.value = (
            records_html(self.current, page_marks) if len(self.current) else "<p>指摘なし no findings.</p>"
        )
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= self.pages - 1
        self.review.show_page(self.selection, keys, page_marks, counts)
        # the summary last: it names the selection, so a browser seeing it sees the table of it too
        what = (
            f"規則 {self.selection.rule_id}"
            if self.selection.rule_id
            else "選択した水準のすべての規則 all rules of the level"
        )
        if self.state_filter.value:
            what += f"（状態 review state: {q.REVIEW_FILTERS[self.state_filter.value]}）"
        where = self.selection.scope.label()
        first = self.page * self.page_size + 1 if self.total else 0
        last = self.page * self.page_size + len(self.current)
        self.header.value = (
            f'<h3>指摘された記録 Records with findings</h3><p class="record-summary">{html.escape(what)}: '
            f"<b>{self.total:,}</b> 件 records — {first:,}–{last:,} を表示 shown "
            f"(ページ page {self.page + 1}/{self.pages})。IDのみ表示 ids only.<br>"
            f'<span class="note">範囲 scope: {html.escape(where)}</span></p>'
        )

    @property
    def selected_keys(self) -> list[tuple[str, str, str]]:
        """(rule_id, entity, entity_id) of the records ticked in :attr:`picker`."""
        return list(self.picker.value)

    def save_csv(self, path: str | os.PathLike[str] | None = None) -> Path | None:
        """Write the whole current list (every page) to CSV (formula-safe, 0600); the path written."""
        if self.selection is None:
            return None
        if path is None:
            files.make_dirs(self.export_dir)
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            name = f"records-{self.selection.run_id}-{self.selection.rule_id or self.selection.level}-{stamp}.csv"
            path = self.export_dir / name.replace("/", "_")
        n = write_records_csv(self.db_path, self.selection, path)
        self.csv_status.value = (
            f"<p>{n:,} 件を保存しました saved {n:,} records: <code>{html.escape(str(path))}</code></p>"
        )
        return Path(path)
