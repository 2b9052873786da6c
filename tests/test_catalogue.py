"""The catalogue drives suites, SQL and docs: these tests fail when one drifts from another."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from toolkit.rules import sql as rule_sql
from toolkit.rules import suites
from toolkit.rules.catalogue import CATALOGUE_PATH, CatalogueError, load, parse
from tools.docs import DOCS_PATH, rules_markdown

SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "rules.md"


def _spec_rule_ids() -> set[str]:
    text = SPEC.read_text(encoding="utf-8")
    return set(re.findall(r"^\| ([a-z_]+\.[a-z_0-9]+) \|", text, flags=re.M))


def test_catalogue_loads_with_every_rule_of_the_spec():
    cat = load()
    ids = {r.id for r in cat.rules}
    if SPEC.exists():
        assert ids == _spec_rule_ids()
    assert len(ids) == 44


def test_every_rule_has_sql():
    import datetime as dt

    selects = rule_sql.rules_sql(dt.date(2026, 10, 1))
    cat = load()
    assert set(selects) == {r.id for r in cat.rules}
    assert all(selects[r.id].entity == r.entity for r in cat.rules)


def test_suite_files_match_the_catalogue():
    docs = suites.suite_documents(load())
    on_disk = suites.load_suite_files()
    assert set(on_disk) == set(docs)
    for name, doc in docs.items():
        assert on_disk[name][0] == doc, f"expectations/{name}.json is stale: run python -m tools.suites"
    per_rule = {}
    for doc, _ in on_disk.values():
        for e in doc["expectations"]:
            per_rule.setdefault(e["meta"]["rule_id"], []).append(e["meta"]["check"])
    assert all(sorted(v) == ["evidenced", "no_violation"] for v in per_rule.values())
    assert set(per_rule) == {r.id for r in load().rules}


def test_rules_doc_is_current():
    assert DOCS_PATH.read_text(encoding="utf-8") == rules_markdown(load()), "run python -m tools.docs"


def test_readme_rule_table_is_current():
    from tools.docs import README_PATH, update_readme

    readme = README_PATH.read_text(encoding="utf-8")
    assert readme == update_readme(readme, load()), "run python -m tools.docs"
    assert [r.id for r in load().rules if f"`{r.id}`" not in readme] == []


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d["rules"][0].update(levle="must"), "unknown key(s) levle; valid keys"),
        (lambda d: d["rules"][0].update(level="could"), "level 'could' is not one of must, should"),
        (lambda d: d["rules"][0].update(entity="visit"), "entity 'visit' is not one of"),
        (lambda d: d["rules"][0].update(requires=["sessions.no_such"]), "not a contract table.column"),
        (lambda d: d["rules"][1].update(id=d["rules"][0]["id"]), "duplicate rule id"),
        (lambda d: d["rules"][0].update(suite="nope"), "suite 'nope' is not declared"),
    ],
)
def test_catalogue_validation_names_the_problem(mutate, message):
    data = yaml.safe_load(CATALOGUE_PATH.read_text(encoding="utf-8"))
    mutate(data)
    with pytest.raises(CatalogueError, match=re.escape(message)):
        parse(data)


def test_select_by_glob():
    cat = load()
    assert {r.id for r in cat.select("ec.*")} == {r.id for r in cat.rules if r.id.startswith("ec.")}
    with pytest.raises(CatalogueError):
        cat.select("nothing.*")
