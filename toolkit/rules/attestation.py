"""Attestation checklist: must-follow items no log can show, answered by the institution.

File format (YAML)::

    institution_id: INST001
    attested_by: 品質管理室
    attested_on: 2026-10-01
    items:
      attest.in_person_backup: true
      attest.vendor_security: false

Unknown item ids are an error naming the valid ids; items left out are "not answered".
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import UserError
from toolkit.rules.catalogue import Catalogue
from toolkit.safe_yaml import load_file

TOP_KEYS = ("institution_id", "attested_by", "attested_on", "items", "notes")


@dataclass(frozen=True)
class Attestation:
    """One answered (or unanswered) checklist item."""

    item_id: str
    section: str
    title_en: str
    title_ja: str
    attested: bool | None
    attested_by: str | None
    attested_on: dt.date | None
    note: str | None


def template(catalogue: Catalogue) -> str:
    """A blank checklist for an institution to fill in."""
    lines = [
        "# ocaudit attestation checklist (自己点検票). Answer true / false for each item.",
        "institution_id: ",
        "attested_by: ",
        "attested_on: ",
        "items:",
    ]
    for it in catalogue.attestation_items:
        lines.append(f"  # {it.section} {it.title_ja} / {it.title_en}")
        lines.append(f"  {it.id}: ")
    return "\n".join(lines) + "\n"


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def load(path: str | Path | None, catalogue: Catalogue) -> list[Attestation]:
    """Read a checklist (None → every item not answered)."""
    data: dict = {}
    if path is not None:
        data = load_file(path, "attestation checklist") or {}
        if not isinstance(data, dict):
            raise UserError(f"{path}: the attestation checklist must be a mapping with an 'items' key")
        unknown = sorted(set(data) - set(TOP_KEYS))
        if unknown:
            raise UserError(f"{path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(TOP_KEYS)}")
    items = data.get("items") or {}
    notes = data.get("notes") or {}
    for key, value in (("items", items), ("notes", notes)):
        if not isinstance(value, dict):
            raise UserError(
                f"{path}: '{key}:' must be a mapping of item id to "
                f"{'true/false' if key == 'items' else 'a note'}, not a {type(value).__name__}"
            )
    for key in ("institution_id", "attested_by"):
        if isinstance(data.get(key), (dict, list)):
            raise UserError(f"{path}: '{key}:' must be a single value, not a {type(data[key]).__name__}")
    for iid, note in notes.items():
        if note is not None and isinstance(note, (dict, list)):
            raise UserError(f"{path}: note of {iid} must be text, not a {type(note).__name__}")
    valid = {it.id for it in catalogue.attestation_items}
    bad = sorted(set(map(str, items)) - valid)
    if bad:
        raise UserError(f"{path}: unknown item(s) {', '.join(bad)}; valid items: {', '.join(sorted(valid))}")
    on = data.get("attested_on")
    if isinstance(on, str) and on.strip():
        try:
            on = dt.date.fromisoformat(on.strip())
        except ValueError as exc:
            raise UserError(f"{path}: attested_on {on!r} is not a date (YYYY-MM-DD)") from exc
    elif not isinstance(on, dt.date):
        on = None
    bad_notes = sorted(set(map(str, notes)) - valid)
    if bad_notes:
        raise UserError(f"{path}: notes for unknown item(s) {', '.join(bad_notes)}")
    out = []
    for it in catalogue.attestation_items:
        val = items.get(it.id)
        if val is not None and not isinstance(val, bool):
            raise UserError(f"{path}: item {it.id} must be true or false, not {val!r}")
        out.append(
            Attestation(
                it.id,
                it.section,
                it.title_en,
                it.title_ja,
                val,
                _text(data.get("attested_by")),
                on,
                _text(notes.get(it.id)),
            )
        )
    return out
