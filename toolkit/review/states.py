"""The review states of a finding and which changes between them are allowed (the state machine).

A finding is keyed by (rule_id, entity, entity_id) and is ``open`` until someone marks it. Every
mark is a new row (append-only); the current state is the latest mark. Allowed changes:

==================  ======  ============  ===========================  ===========================
from \\ to           open    acknowledged  corrected                    justified (note required)
==================  ======  ============  ===========================  ===========================
open (no mark)      –       yes           yes                          yes
acknowledged        yes     –             yes                          yes
corrected           yes     yes           only when still present      yes
justified           yes*    yes           yes                          only with a changed note
==================  ======  ============  ===========================  ===========================

``*`` withdrawing an exception needs a note. "Still present" = a run that audited data loaded
after the corrected mark flagged the record again (a second fix can then be recorded). A change
to the same state is otherwise refused, so a sheet imported twice is refused the second time.
"""

from __future__ import annotations

import re

#: state → (Japanese label, English meaning)
STATES: dict[str, tuple[str, str]] = {
    "open": ("未対応", "not reviewed yet (the default)"),
    "acknowledged": ("確認中", "seen, work in progress"),
    "corrected": ("訂正済み", "the record was fixed at the source; the next run should not flag it"),
    "justified": ("正当な例外", "a documented exception the guideline allows (e.g. an emergency)"),
}
#: Longest note and reviewer name kept (characters). Notes are free text typed by staff: they are
#: HTML-escaped and formula-neutralised wherever shown and never leave in survey packages, but
#: nothing checks them for patient identifiers — write ids and reasons, never names.
NOTE_MAX = 500
WHO_MAX = 80
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def label(state: str) -> str:
    """``確認中 acknowledged``: the Japanese label with the state code."""
    return f"{STATES[state][0]} {state}" if state in STATES else state


def choices() -> list[str]:
    """The drop-down values of a sheet's new-state column, e.g. ``acknowledged 確認中``."""
    return [f"{s} {ja}" for s, (ja, _en) in STATES.items()]


def parse_state(value: object) -> str | None:
    """The state code in a cell (``corrected``, ``訂正済み``, ``corrected 訂正済み``); None if it names none."""
    text = str(value or "").strip().lower()
    if not text:
        return None
    found = set()
    for token in re.split(r"[\s/／,、()（）]+", text):
        for code, (ja, _en) in STATES.items():
            if token in (code, ja):
                found.add(code)
    return found.pop() if len(found) == 1 else None


def text_problem(value: str, what: str, limit: int) -> str | None:
    """Why a note or name cannot be stored (too long, control characters), or None."""
    if len(value) > limit:
        return f"{what} は {limit} 文字以内にしてください {what} is {len(value)} characters; at most {limit}"
    if _CONTROL.search(value):
        return f"{what} に制御文字があります {what} holds control characters; use plain text"
    return None


def transition_problem(
    current: str, new: str, note: str, *, current_note: str | None = None, still_present: bool = False
) -> str | None:
    """Why a finding in state ``current`` cannot be marked ``new`` with ``note`` (JA/EN), or None.

    ``still_present``: the current mark is ``corrected`` and a later run flagged the record again.
    """
    if new not in STATES:
        allowed = ", ".join(choices())
        return f"状態が不正です unknown state {new!r}; use one of {allowed}"
    if new == "justified" and not note.strip():
        return "正当な例外には理由（備考）が必要です a justified mark needs a note saying why (the documented exception)"
    if current == "justified" and new == "open" and not note.strip():
        return "例外を取り消す理由（備考）が必要です withdrawing a justified mark needs a note saying why"
    if new != current:
        return None
    if new == "corrected" and still_present:
        return None  # a second fix after the first did not remove the finding
    if new == "justified" and note.strip() != (current_note or "").strip():
        return None  # an amended reason
    hint = (
        " (訂正後も検出されたときだけ再記録できます only again once a later run still flags it)"
        if new == "corrected"
        else ""
    )
    return f"すでに {label(current)} です already {current}; nothing to change{hint}"
