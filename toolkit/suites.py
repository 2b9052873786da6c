"""Great Expectations suites, one per guideline section group, built from the catalogue.

The suites live in ``expectations/<suite>.json`` so a quality officer can read and version
them. Each rule contributes two expectations on its status column in its entity's check
table (``_audit_<entity>_checks``, one row per record, NULL = not in scope):

* ``no_violation``: values in (passed, not_evidenced) — the unexpected count is *violated*;
* ``evidenced``: values in (passed, violated) — the unexpected count is *not evidenced*.

Element count minus missing count is the rule's denominator (records in scope). A suite
spans entities; at run time its expectations are validated against each entity's table. ``ocaudit`` writes
the files with :func:`write_suites`; ``tests/test_catalogue.py`` fails when they drift from
the catalogue.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from toolkit.catalogue import Catalogue, Rule
from toolkit.rule_sql import check_table, column_name

EXPECTATIONS_DIR = Path(__file__).resolve().parent.parent / "expectations"
CHECK_KINDS = {"no_violation": ["passed", "not_evidenced"], "evidenced": ["passed", "violated"]}


def expectation_dicts(rule: Rule) -> list[dict]:
    """The two GX expectation configurations (JSON form) for one rule."""
    out = []
    for kind, value_set in CHECK_KINDS.items():
        out.append({
            "type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": column_name(rule.id), "value_set": value_set},
            "meta": {"rule_id": rule.id, "check": kind, "entity": rule.entity, "table": check_table(rule.entity),
                     "section": rule.section, "level": rule.level,
                     "title_en": rule.title_en, "title_ja": rule.title_ja},
        })
    return out


def suite_documents(catalogue: Catalogue) -> dict[str, dict]:
    """Suite name → GX ExpectationSuite JSON document."""
    docs: dict[str, dict] = {}
    for name, titles in catalogue.suites.items():
        rules = [r for r in catalogue.rules if r.suite == name]
        docs[name] = {
            "name": name,
            "meta": {"title_en": titles["title_en"], "title_ja": titles["title_ja"],
                     "generated_from": "toolkit/catalogue/rules.yaml",
                     "rules": [r.id for r in rules]},
            "expectations": [e for r in rules for e in expectation_dicts(r)],
        }
    return docs


def render(doc: dict) -> str:
    """Stable JSON text of a suite document (what is written to disk)."""
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


def write_suites(catalogue: Catalogue, directory: Path = EXPECTATIONS_DIR) -> list[Path]:
    """Write every suite file; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, doc in suite_documents(catalogue).items():
        p = directory / f"{name}.json"
        p.write_text(render(doc), encoding="utf-8")
        paths.append(p)
    return paths


def load_suite_files(directory: Path = EXPECTATIONS_DIR) -> dict[str, tuple[dict, str]]:
    """Suite name → (JSON document, SHA-256 of the file) for every suite file on disk."""
    out = {}
    for p in sorted(directory.glob("*.json")):
        raw = p.read_bytes()
        out[p.stem] = (json.loads(raw), hashlib.sha256(raw).hexdigest())
    return out


if __name__ == "__main__":  # python -m toolkit.suites  → regenerate expectations/
    from toolkit.catalogue import load

    for path in write_suites(load()):
        print(f"wrote {path}")
