"""Great Expectations suites, one per guideline section group, built from the catalogue.

The suites live in ``expectations/<suite>.json`` so a quality officer can read and version
them. Each rule contributes two expectations on its status column in its entity's check
table (``_audit_<entity>_checks``, one row per record, NULL = not in scope):

* ``no_violation``: values in (passed, not_evidenced) — the unexpected count is *violated*;
* ``evidenced``: values in (passed, violated) — the unexpected count is *not evidenced*.

Element count minus missing count is the rule's denominator (records in scope). A suite
spans entities; at run time its expectations are validated against each entity's table.
``python -m tools.suites`` writes the files; ``tests/test_catalogue.py`` fails when they drift
from the catalogue. The audit records the SHA-256 of each file it ran.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from toolkit.resources import expectations_dir
from toolkit.rules.catalogue import Catalogue, Rule
from toolkit.rules.sql import check_table, column_name

CHECK_KINDS = {"no_violation": ["passed", "not_evidenced"], "evidenced": ["passed", "violated"]}


def expectation_dicts(rule: Rule) -> list[dict]:
    """The two GX expectation configurations (JSON form) for one rule."""
    out = []
    for kind, value_set in CHECK_KINDS.items():
        out.append(
            {
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {"column": column_name(rule.id), "value_set": value_set},
                "meta": {
                    "rule_id": rule.id,
                    "check": kind,
                    "entity": rule.entity,
                    "table": check_table(rule.entity),
                    "section": rule.section,
                    "level": rule.level,
                    "title_en": rule.title_en,
                    "title_ja": rule.title_ja,
                },
            }
        )
    return out


def suite_documents(catalogue: Catalogue) -> dict[str, dict]:
    """Suite name → GX ExpectationSuite JSON document."""
    docs: dict[str, dict] = {}
    for name, titles in catalogue.suites.items():
        rules = [r for r in catalogue.rules if r.suite == name]
        docs[name] = {
            "name": name,
            "meta": {
                "title_en": titles["title_en"],
                "title_ja": titles["title_ja"],
                "generated_from": "toolkit/rules/rules.yaml",
                "rules": [r.id for r in rules],
            },
            "expectations": [e for r in rules for e in expectation_dicts(r)],
        }
    return docs


def render(doc: dict) -> str:
    """Stable JSON text of a suite document (what is written to disk)."""
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


def load_suite_files(directory: Path | None = None) -> dict[str, tuple[dict, str]]:
    """Suite name → (JSON document, SHA-256 of the file) for every suite file on disk.

    ``directory`` defaults to the shipped ``expectations/`` (:func:`toolkit.resources.expectations_dir`);
    a folder without suites is an error, never an audit with an empty suite hash.
    """
    directory = expectations_dir() if directory is None else directory
    out = {}
    for p in sorted(directory.glob("*.json")):
        raw = p.read_bytes()
        out[p.stem] = (json.loads(raw), hashlib.sha256(raw).hexdigest())
    if not out:
        raise FileNotFoundError(f"{directory}: no GX suite (*.json) found; reinstall ocaudit (pip install .)")
    return out
