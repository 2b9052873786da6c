"""Review marking in the dashboard: choose records of the shown page, a state, a name and a note, save.

The panel sits under the record list. Saving calls :func:`toolkit.review.marks.mark_file`, which
opens the database to write for that one batch and closes it (every other interaction reads
read-only); the batch is validated whole, so a refused record means nothing is written and the
problems are listed (JA/EN). Names and notes are staff free text: escaped wherever shown.
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Sequence

import ipywidgets as widgets

from toolkit.dashboard import queries as q
from toolkit.errors import UserError
from toolkit.review import marks, states

STILL_PRESENT = "訂正済みだが再検出 marked corrected, still present"
#: The review-state filter choices of the record list's counts (label, value).
STATE_OPTIONS = [(states.label(s), s) for s in states.STATES]


def state_text(state: str, still_present: bool = False) -> str:
    """The review state as shown in a record row: ``確認中 acknowledged`` (or corrected, still present)."""
    return STILL_PRESENT if state == "corrected" and still_present else states.label(state)


def counts_html(counts: dict[str, int], what: str) -> str:
    """The review counts of the shown rule (or all rules) beside violated / not evidenced (escaped)."""
    head = "".join(
        f"<th class='review-count-{key}'>{html.escape(label)}</th>" for key, label in q.REVIEW_COUNT_LABELS
    )
    alarm = {"corrected_still_present"} if counts.get("corrected_still_present") else set()
    cells = "".join(
        f"<td class='n review-count-{key}{' alarm' if key in alarm else ''}'><b>{counts.get(key, 0):,}</b></td>"
        for key, _l in q.REVIEW_COUNT_LABELS
    )
    return (
        f"<h3>レビュー Review marks — {html.escape(what)}</h3>"
        "<p class='note'>指摘された記録（重複なし）を現在の状態で数えます。マークは遵守率を変えません"
        "（正当な例外も違反のまま数えます）。 Findings counted once under their current state; marks never"
        " change the compliance rate (a justified finding still counts as violated).</p>"
        f"<table class='ocaudit-review-counts'><tr>{head}</tr><tr>{cells}</tr></table>"
    )


class ReviewPanel:
    """Marking controls for the records of one page; ``on_saved`` redraws the list after a save."""

    def __init__(self, db_path: str | os.PathLike[str], on_saved: Callable[[], None]):
        self.db_path = db_path
        self.on_saved = on_saved
        self.run_id: str | None = None
        self.counts = widgets.HTML()
        self.picker = widgets.SelectMultiple(
            options=[],
            rows=8,
            description="記録 records",
            layout=widgets.Layout(width="780px"),
            style={"description_width": "140px"},
        )
        self.picker.add_class("ocaudit-mark-picker")
        self.select_all = widgets.Button(
            description="このページをすべて選択 select all on this page", layout=widgets.Layout(width="300px")
        )
        self.clear = widgets.Button(description="選択を解除 clear", layout=widgets.Layout(width="160px"))
        wide = {"description_width": "140px"}
        self.state = widgets.Dropdown(
            options=[o for o in STATE_OPTIONS if o[1] != "open"]
            + [o for o in STATE_OPTIONS if o[1] == "open"],
            value="acknowledged",
            description="新しい状態 new state",
            layout=widgets.Layout(width="400px"),
            style=wide,
        )
        self.state.add_class("ocaudit-mark-state")
        self.who = widgets.Text(
            description="記入者 reviewer",
            placeholder="氏名または職員ID name or staff id",
            layout=widgets.Layout(width="400px"),
            style=wide,
        )
        self.who.add_class("ocaudit-mark-who")
        self.note = widgets.Textarea(
            description="備考 note",
            placeholder="理由（正当な例外では必須）。患者の氏名は書かない reason (needed for justified); no patient names",
            layout=widgets.Layout(width="780px", height="64px"),
            style=wide,
        )
        self.note.add_class("ocaudit-mark-note")
        self.save_button = widgets.Button(
            description="記録する Save mark", button_style="primary", layout=widgets.Layout(width="200px")
        )
        self.save_button.add_class("ocaudit-mark-save")
        self.status = widgets.HTML()
        self.status.add_class("ocaudit-mark-status")
        self.select_all.on_click(lambda _b: self._select_all())
        self.clear.on_click(lambda _b: setattr(self.picker, "value", ()))
        self.save_button.on_click(lambda _b: self.save())
        help_text = widgets.HTML(
            "<h3>レビューを記録する Mark findings</h3><p class='note'>このページの記録を選び（Ctrl/Shift+クリックで複数）、"
            "状態・記入者・備考を入れて「記録する」。マークは追記され、履歴は残ります。 Choose records of this page"
            " (Ctrl/Shift+click for several), a state, your name and a note, then Save: marks are appended,"
            " the history is kept.</p>"
        )
        self.widget = widgets.VBox(
            [
                self.counts,
                help_text,
                widgets.HBox(
                    [
                        self.picker,
                        widgets.VBox([self.select_all, self.clear]),
                    ]
                ),
                self.state,
                self.who,
                self.note,
                self.save_button,
                self.status,
            ]
        )
        self.widget.add_class("ocaudit-review-panel")

    def show_page(
        self,
        sel: q.Selection,
        keys: Sequence[marks.Key],
        page_marks: dict[marks.Key, dict[str, object]],
        counts: dict[str, int],
    ) -> None:
        """Offer the page's records (with their current state) and show the selection's review counts."""
        self.run_id = sel.run_id
        what = f"規則 rule {sel.rule_id}" if sel.rule_id else "すべての規則 all rules of the level"
        self.counts.value = counts_html(counts, what)
        options = []
        for key in keys:
            mark = page_marks.get(key)
            state = "open" if mark is None else str(mark["state"])
            text = state_text(state, mark is not None and bool(mark["still_present"]))
            rule = "" if sel.rule_id else f"  [{key[0]}]"
            options.append((f"{key[2]}{rule} — {text}", key))
        self.picker.options = options

    def _select_all(self) -> None:
        self.picker.value = tuple(value for _label, value in self.picker.options)

    @property
    def selected_keys(self) -> list[marks.Key]:
        """(rule_id, entity, entity_id) of the records chosen in :attr:`picker`."""
        return list(self.picker.value)

    def save(self) -> int:
        """Mark the chosen records; the number marked (0 when refused: the problems are shown)."""
        keys = self.selected_keys
        if not keys:
            self._show_problems(["記録を選んでください choose at least one record of the page first"])
            return 0
        state = self.state.value
        try:
            ids = marks.mark_file(self.db_path, keys, state, self.who.value, self.note.value, self.run_id)
        except marks.MarkError as exc:
            names = [f"{k[2]} [{k[0]}]" for k in keys]
            self._show_problems([f"{names[i]}: {msg}" for i, msg in exc.problems])
            return 0
        except UserError as exc:  # e.g. the file is busy (an ingest is writing)
            self._show_problems([str(exc)])
            return 0
        self.note.value = ""
        self.on_saved()
        self.status.value = (
            f"<p class='mark-ok' style='color:#1e7b34'><b>{len(ids):,} 件を記録しました {len(ids):,}"
            f" record{'' if len(ids) == 1 else 's'} marked</b> {html.escape(states.label(state))}</p>"
        )
        return len(ids)

    def _show_problems(self, problems: Sequence[str]) -> None:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in problems)
        self.status.value = (
            "<div class='mark-problems' style='color:#c0392b'><b>記録しませんでした nothing was written</b>"
            f"<ul>{items}</ul></div>"
        )
