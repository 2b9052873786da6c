"""Generate docs/rules.md from the catalogue (``python -m toolkit.docs``)."""

from __future__ import annotations

from pathlib import Path

from toolkit.catalogue import Catalogue, load

DOCS_PATH = Path(__file__).resolve().parent.parent / "docs" / "rules.md"


def rules_markdown(cat: Catalogue) -> str:
    """The rule reference page: one table per suite, then the attestation checklist."""
    lines = ["# Rule reference (generated from toolkit/catalogue/rules.yaml — do not edit)", "",
             "Exact semantics, including how unknown values are judged: docs/rule-semantics.md.", ""]
    for suite, titles in cat.suites.items():
        lines += [f"## {titles['title_en']} / {titles['title_ja']}", "",
                  f"GX suite: `expectations/{suite}.json`", "",
                  "| rule id | level | section | entity | 日本語 | scope | check |", "|---|---|---|---|---|---|---|"]
        for r in cat.rules:
            if r.suite == suite:
                lines.append(f"| `{r.id}` | {r.level} | {r.section} | {r.entity} | {r.title_ja} | {r.scope} "
                             f"| {r.check} |")
        lines.append("")
    lines += ["## Attestation items (自己点検項目) — must-follow items no log can show", "",
              "| item | section | English | 日本語 |", "|---|---|---|---|"]
    for it in cat.attestation_items:
        lines.append(f"| `{it.id}` | {it.section} | {it.title_en} | {it.title_ja} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    DOCS_PATH.write_text(rules_markdown(load()), encoding="utf-8")
    print(f"wrote {DOCS_PATH}")
