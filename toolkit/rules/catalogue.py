"""Load and validate the rule catalogue (``toolkit/rules/rules.yaml``).

The catalogue is data: suites, reports, docs and tests all read it through :func:`load`.
Validation is strict, in the manner of pointblank's YAML reader: an unknown key is an
error that names the valid keys, so a typo never silently disables a rule.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from toolkit.contract import TABLES
from toolkit.safe_yaml import load_file

CATALOGUE_PATH = Path(__file__).parent / "rules.yaml"

ENTITIES = ("session", "prescription", "care_plan", "doctor", "institution", "ec_case")
LEVELS = ("must", "should")
RULE_KEYS = (
    "id",
    "entity",
    "section",
    "level",
    "suite",
    "title_en",
    "title_ja",
    "scope",
    "check",
    "requires",
    "guidance",
    "guidance_ja",
)
ATTESTATION_KEYS = ("id", "section", "title_en", "title_ja")
TOP_KEYS = ("suites", "rules", "attestation_items")


class CatalogueError(ValueError):
    """The catalogue file is malformed."""


@dataclass(frozen=True)
class Rule:
    """One rule of the catalogue."""

    id: str
    entity: str
    section: str
    level: str
    suite: str
    title_en: str
    title_ja: str
    scope: str
    check: str
    requires: tuple[str, ...]
    guidance: str
    guidance_ja: str


@dataclass(frozen=True)
class AttestationItem:
    """A must-follow item no log can show; the institution attests to it."""

    id: str
    section: str
    title_en: str
    title_ja: str


@dataclass(frozen=True)
class Catalogue:
    """The whole catalogue: suites (id → titles), rules in order, attestation items."""

    suites: dict[str, dict[str, str]]
    rules: tuple[Rule, ...]
    attestation_items: tuple[AttestationItem, ...]

    def rule(self, rule_id: str) -> Rule:
        """The rule with this id (KeyError listing close ids otherwise)."""
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(f"no rule {rule_id!r} in the catalogue")

    def select(self, pattern: str | None) -> tuple[Rule, ...]:
        """Rules whose id matches a glob (``ec.*``) or comma-separated globs; all if None.

        Every pattern must match at least one rule: a list with one pattern that matches nothing
        is refused whole (:class:`CatalogueError` naming the closest rule ids), so a typo never
        silently narrows the audit.
        """
        if pattern is None:
            return self.rules
        pats = [p.strip() for p in pattern.split(",") if p.strip()]
        if not pats:
            raise CatalogueError(
                f"--rules {pattern!r}: no pattern given; rule ids look like 'consent.recorded' or 'ec.*'"
            )
        bad = [p for p in pats if not any(fnmatch.fnmatchcase(r.id, p) for r in self.rules)]
        if bad:
            raise CatalogueError(
                "--rules: nothing was audited, because "
                + "; ".join(f"{p!r} matches no rule ({self._closest(p)})" for p in bad)
            )
        return tuple(r for r in self.rules if any(fnmatch.fnmatchcase(r.id, p) for p in pats))

    def _closest(self, pattern: str) -> str:
        """``did you mean consent.recorded, consent.explicit_wish?`` for a pattern matching nothing."""
        ids = [r.id for r in self.rules]
        groups = sorted({i.split(".")[0] + ".*" for i in ids})
        close = difflib.get_close_matches(pattern, groups + ids, n=3, cutoff=0.5)
        if not close:  # compare the part before the glob with the id prefixes
            stem = pattern.split("*")[0].split("?")[0].rstrip(".")
            close = difflib.get_close_matches(stem, [g[:-2] for g in groups], n=3, cutoff=0.5)
            close = [c + ".*" for c in close]
        if close:
            return "did you mean " + ", ".join(close) + "?"
        return "rule ids look like 'consent.recorded'; groups: " + ", ".join(groups)


def _check_keys(obj: dict, allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise CatalogueError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(allowed)}"
        )
    missing = [k for k in allowed if k not in obj]
    if missing:
        raise CatalogueError(f"{where}: missing key(s) {', '.join(missing)}")


def parse(data: dict) -> Catalogue:
    """Validate a parsed YAML document and build the :class:`Catalogue`."""
    if not isinstance(data, dict):
        raise CatalogueError("catalogue: the top level must be a mapping")
    _check_keys(data, TOP_KEYS, "catalogue")
    suites = data["suites"]
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, raw in enumerate(data["rules"]):
        where = f"rules[{i}] ({raw.get('id', '?')})"
        _check_keys(raw, RULE_KEYS, where)
        if raw["id"] in seen:
            raise CatalogueError(f"{where}: duplicate rule id")
        seen.add(raw["id"])
        if raw["entity"] not in ENTITIES:
            raise CatalogueError(f"{where}: entity {raw['entity']!r} is not one of {', '.join(ENTITIES)}")
        if raw["level"] not in LEVELS:
            raise CatalogueError(f"{where}: level {raw['level']!r} is not one of {', '.join(LEVELS)}")
        if raw["suite"] not in suites:
            raise CatalogueError(
                f"{where}: suite {raw['suite']!r} is not declared; suites: {', '.join(suites)}"
            )
        for req in raw["requires"]:
            tname, _, col = req.partition(".")
            if tname not in TABLES or col not in TABLES[tname].column_names:
                raise CatalogueError(f"{where}: requires {req!r} is not a contract table.column")
        rules.append(Rule(**{**raw, "requires": tuple(raw["requires"]), "section": str(raw["section"])}))
    items = []
    for i, raw in enumerate(data["attestation_items"]):
        _check_keys(raw, ATTESTATION_KEYS, f"attestation_items[{i}]")
        items.append(AttestationItem(**{k: str(v) for k, v in raw.items()}))
    return Catalogue(suites=dict(suites), rules=tuple(rules), attestation_items=tuple(items))


def rules_disabled_by(missing: Iterable[str], cat: Catalogue | None = None) -> dict[str, tuple[str, ...]]:
    """For each missing ``table.column``, the ids of the rules needing it (catalogue order).

    A rule that requires a column the data lacks is *not evaluable*; ingest names them when a
    file lacks a contract column. A column no rule needs maps to ``()``.
    """
    rules = (cat or load()).rules
    return {col: tuple(r.id for r in rules if col in r.requires) for col in missing}


@lru_cache(maxsize=4)
def load(path: str | None = None) -> Catalogue:
    """Load and validate the catalogue (the shipped one by default)."""
    p = Path(path) if path else CATALOGUE_PATH
    return parse(load_file(p, "rule catalogue"))
