"""The shape of the code: stages import only earlier stages; a rule's meaning lives in the listed places.

docs/architecture.md describes both; these tests fail when the code drifts from it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from toolkit.report import text
from toolkit.rules.catalogue import load

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "toolkit"

#: Pipeline order: a module may import its own stage and earlier ones, never a later one.
#: ``shared`` holds the modules every stage may use (contract, errors, resources, periods, theme).
ORDER = ["shared", "store", "ingest", "rules", "audit", "review", "report", "dashboard", "survey"]
SHARED = {
    "contract",
    "errors",
    "resources",
    "periods",
    "chart_theme",
    "safe_yaml",
    "municipality",
    "__init__",
}
#: Outside the pipeline: the generator (reads only the contract) and the entry points.
OUTSIDE = {"synth", "cli", "demo", "__main__"}
MAX_LINES = 600
#: The one import against the arrows, and why: ingest names the rules a missing column disables,
#: reading the catalogue's ``requires`` (data), never the rules' SQL or the audit.
BACKWARD_ALLOWED = {("ingest", "toolkit.rules.catalogue")}


def _stage(module: str) -> str:
    """Stage of a dotted module name under toolkit (``toolkit.audit.run`` → ``audit``)."""
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else "__init__"
    return "shared" if head in SHARED else head


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("toolkit"):
            if node.module == "toolkit":
                out |= {f"toolkit.{a.name}" for a in node.names}
            else:
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("toolkit")}
    return out


MODULES = sorted(p for p in PKG.rglob("*.py") if "_shipped" not in p.parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_stages_import_only_earlier_stages(path: Path) -> None:
    me = _stage("toolkit." + ".".join(path.relative_to(PKG).with_suffix("").parts))
    if me in OUTSIDE:
        return
    for imported in _imports(path):
        other = _stage(imported)
        if other == "__version__" or imported == "toolkit.__version__":
            continue
        assert other not in OUTSIDE, f"{path.relative_to(ROOT)} imports {imported} (outside the pipeline)"
        if (me, imported) in BACKWARD_ALLOWED:
            continue
        assert ORDER.index(other) <= ORDER.index(me), (
            f"{path.relative_to(ROOT)} ({me}) imports {imported} ({other}), a later stage"
        )


def test_the_generator_reads_only_the_contract() -> None:
    for path in (PKG / "synth").glob("*.py"):
        for imported in _imports(path):
            assert imported.startswith(
                (
                    "toolkit.synth",
                    "toolkit.contract",
                    "toolkit.errors",
                    "toolkit.resources",
                    "toolkit.store.files",
                )
            ), (
                f"{path.relative_to(ROOT)} imports {imported}: the ground truth must not reuse the audit's code"
            )


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PKG)))
def test_no_module_past_600_lines(path: Path) -> None:
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)} has {n} lines: split it (docs/architecture.md)"


def test_every_rule_has_guidance_in_both_languages_from_the_catalogue() -> None:
    for rule in load().rules:
        assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", rule.guidance_ja), rule.id
        assert re.search(r"[A-Za-z]{3}", rule.guidance), rule.id  # English text beside the Japanese
        assert text.guidance(rule.id) == (rule.guidance_ja, rule.guidance), rule.id


def test_every_rule_is_in_the_semantics_doc() -> None:
    doc = (ROOT / "docs" / "rule-semantics.md").read_text(encoding="utf-8")
    missing = [r.id for r in load().rules if not re.search(rf"(\| |`){re.escape(r.id)}( |`|\s\()", doc)]
    assert not missing, f"docs/rule-semantics.md has no row for {missing}"


def test_every_insert_into_the_run_store_names_its_columns() -> None:
    positional = re.compile(r"INSERT\s+INTO\s+\w+\s+(VALUES|SELECT)\b", re.IGNORECASE)
    hits = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in MODULES
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if positional.search(line)
    ]
    assert not hits, f"INSERT without a column list: {hits}"


def test_every_subpackage_is_listed_for_the_wheel() -> None:
    """pyproject lists packages explicitly: a new stage missing there installs as a broken wheel."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"]
    )
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in PKG.rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"
