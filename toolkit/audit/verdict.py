"""The one verdict of an audit run (判定): *compliant*, *not compliant* or *incomplete*.

Every output — the ``audit`` terminal summary, the HTML report, the feedback sheets, the
notebooks and ``report --fail-on`` — reads :func:`compute_verdict`; nothing else decides it.

The verdict is about the **must-follow rules** (最低限遵守事項) checked from records:

* **incomplete** (判定不能・未完了): at least one must rule is ``not_evaluable`` (a needed
  ``table.column`` is absent) or ``error``, or the run is *partial* (``audit --rules``) and left
  must rules out. Compliance cannot be shown, so the run is never called compliant; the
  violations found among the rules that *were* checked are listed beside it, never hidden.
* **not compliant** (不適合): every must rule was checked and at least one has a violated or
  not-evidenced record (*not evidenced* counts against compliance, shown apart from violated).
* **compliant** (適合): every must rule was checked and none has a finding (``not_applicable``,
  nothing in scope, is checked).

Should-level rules (推奨事項) never change the verdict; their failures and unchecked rules are
carried along for ``--fail-on should``.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CHECKED = ("passed", "failed", "not_applicable")
UNCHECKED = ("not_evaluable", "error")

LABELS: dict[str, tuple[str, str]] = {
    "compliant": ("適合", "compliant"),
    "not_compliant": ("不適合", "not compliant"),
    "incomplete": ("判定不能・未完了", "incomplete"),
}
STATUS_WORDS: dict[str, tuple[str, str]] = {
    "not_evaluable": ("評価不能", "not evaluable"),
    "error": ("エラー", "error"),
}


def _get(row: Any, key: str, default: Any = None) -> Any:
    """A field of a mapping (dict, pandas record) or an object (:class:`RuleResult`)."""
    value = row.get(key, default) if isinstance(row, Mapping) else getattr(row, key, default)
    try:
        if value != value:  # NaN from a pandas frame
            return default
    except (TypeError, ValueError):  # arrays compare element-wise
        pass
    return value


def _columns(value: Any) -> tuple[str, ...]:
    if value is None or isinstance(value, str):
        return (value,) if value else ()
    try:
        return tuple(str(v) for v in value)
    except TypeError:
        return ()


@dataclass(frozen=True)
class UncheckedRule:
    """A rule the run could not check: its status and the ``table.column`` names that were missing."""

    rule_id: str
    level: str
    status: str
    missing_columns: tuple[str, ...] = ()
    message: str = ""
    title_ja: str = ""
    title_en: str = ""

    def describe(self) -> str:
        """``consent.recorded (評価不能 not evaluable: sessions.consent_at missing 列なし)``."""
        ja, en = STATUS_WORDS.get(self.status, (self.status, self.status))
        if self.missing_columns:
            why = ", ".join(self.missing_columns) + " missing 列なし"
        elif self.status == "error":
            why = self.message or "the check failed to run"
        else:
            why = self.message or "needed data absent"
        return f"{self.rule_id} ({ja} {en}: {why})"


@dataclass(frozen=True)
class RunCoverage:
    """Which rules a run covered: all of the catalogue, or a *partial* run made with ``--rules``."""

    partial: bool
    rules_run: int
    rules_total: int
    pattern: str | None = None
    not_run: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def not_run_of(self, level: str) -> tuple[str, ...]:
        """Rule ids of one level that the catalogue has and this (partial) run did not run."""
        return tuple(self.not_run.get(level, ()))

    def label(self) -> str:
        """``部分実行 partial: 3 of 44 rules (--rules 'consent.*')`` or ``全44規則 complete: all 44 rules``."""
        if self.partial:
            pat = f" (--rules {self.pattern!r})" if self.pattern else ""
            return f"部分実行 partial: {self.rules_run} of {self.rules_total} rules 規則{pat}"
        return f"全{self.rules_run}規則 complete: all {self.rules_run} rules"


def run_coverage(parameters: str | Mapping | None, rule_ids: Sequence[str]) -> RunCoverage:
    """The coverage of a stored run, from ``audit_runs.parameters`` and the rule ids it has results for.

    Runs written before coverage was recorded carry only ``rules`` (the ``--rules`` pattern):
    any pattern makes them partial, and the rules not run are read from the current catalogue.
    """
    from toolkit.store.schema import run_is_partial, run_parameters

    params = run_parameters(parameters)
    partial = run_is_partial(params)
    if not partial:
        return RunCoverage(False, len(rule_ids), len(rule_ids))
    if "not_run" in params and "rules_total" in params:
        not_run = {k: tuple(v) for k, v in dict(params["not_run"]).items()}
        total = int(params["rules_total"])
    else:
        from toolkit.rules.catalogue import load

        cat = load()
        have = set(rule_ids)
        not_run = {
            lvl: tuple(r.id for r in cat.rules if r.level == lvl and r.id not in have)
            for lvl in ("must", "should")
        }
        total = len(cat.rules)
    return RunCoverage(True, int(params.get("rules_run", len(rule_ids))), total, params.get("rules"), not_run)


@dataclass(frozen=True)
class Verdict:
    """The verdict of a run (or of one doctor's or institution's part of it) and why."""

    code: str
    must_rules: int
    must_failed: tuple[str, ...]
    must_unchecked: tuple[UncheckedRule, ...]
    should_failed: tuple[str, ...]
    should_unchecked: tuple[UncheckedRule, ...]
    violated: int
    not_evidenced: int
    coverage: RunCoverage | None = None

    @property
    def label_ja(self) -> str:
        """適合 / 不適合 / 判定不能・未完了."""
        return LABELS[self.code][0]

    @property
    def label_en(self) -> str:
        """compliant / not compliant / incomplete."""
        return LABELS[self.code][1]

    @property
    def label(self) -> str:
        """Japanese first, English beside it: ``判定不能・未完了 incomplete``."""
        return f"{self.label_ja} {self.label_en}"

    @property
    def must_not_run(self) -> tuple[str, ...]:
        """Must rules a partial run did not run."""
        return self.coverage.not_run_of("must") if self.coverage and self.coverage.partial else ()

    @property
    def n_must_not_checked(self) -> int:
        """Must rules without a result: not evaluable, error, or not run (partial run)."""
        return len(self.must_unchecked) + len(self.must_not_run)

    @property
    def missing_columns(self) -> tuple[str, ...]:
        """Every ``table.column`` whose absence left a must rule unchecked, sorted."""
        return tuple(sorted({c for u in self.must_unchecked for c in u.missing_columns}))

    def unchecked(self, levels: Iterable[str] = ("must",)) -> list[str]:
        """One line per rule of these levels that was not checked (for ``--fail-on`` and stderr)."""
        out = []
        for level in levels:
            rows = self.must_unchecked if level == "must" else self.should_unchecked
            out += [f"{u.describe()} [{level}]" for u in rows]
            if self.coverage and self.coverage.partial:
                out += [
                    f"{rid} (not in this partial run 部分実行で未実行) [{level}]"
                    for rid in self.coverage.not_run_of(level)
                ]
        return out

    def summary_ja(self) -> str:
        """The sentence that follows the label, in Japanese."""
        found = f"{len(self.must_failed)} 規則で指摘あり（違反 {self.violated:,} 件・記録なし {self.not_evidenced:,} 件）"
        if self.code == "compliant":
            return f"最低限遵守事項 {self.must_rules} 規則をすべて確認し、違反・記録なしはありませんでした。"
        if self.code == "not_compliant":
            return f"最低限遵守事項 {self.must_rules} 規則をすべて確認しました。{found}。"
        if not self.n_must_not_checked:  # incomplete because the run holds no must rule at all
            return "この実行には最低限遵守事項の規則の結果がないため、遵守を示せません。"
        text = f"最低限遵守事項 {self.n_must_not_checked} 規則を確認できなかったため、遵守を示せません。"
        if self.missing_columns:
            text += f"不足している列: {', '.join(self.missing_columns)}。"
        if self.must_failed:
            text += f"確認できた規則のうち {found}。"
        return text

    def summary_en(self) -> str:
        """The sentence that follows the label, in English."""
        found = (
            f"{len(self.must_failed)} must rule(s) have findings (violated {self.violated:,}, "
            f"not evidenced {self.not_evidenced:,})"
        )
        if self.code == "compliant":
            return (
                f"All {self.must_rules} must-follow rules were checked; no violated or not-evidenced record."
            )
        if self.code == "not_compliant":
            return f"All {self.must_rules} must-follow rules were checked; {found}."
        if not self.n_must_not_checked:  # incomplete because the run holds no must rule at all
            return "This run holds no must-follow rule result, so compliance cannot be shown."
        text = f"{self.n_must_not_checked} must-follow rule(s) could not be checked, so compliance cannot be shown."
        if self.missing_columns:
            text += f" Missing columns: {', '.join(self.missing_columns)}."
        if self.must_failed:
            text += f" Among the rules checked, {found}."
        return text

    def summary(self) -> str:
        """Both sentences, Japanese first."""
        return f"{self.summary_ja()} {self.summary_en()}"

    def line(self) -> str:
        """One terminal line: ``verdict 判定: 判定不能・未完了 incomplete — 2 must rules not checked: …``."""
        head = f"verdict 判定: {self.label}"
        if self.code == "compliant":
            return f"{head} — all {self.must_rules} must rules checked, no finding"
        bits = []
        if self.must_unchecked:
            bits.append(
                f"{len(self.must_unchecked)} must rule(s) not checked 未確認: "
                + "; ".join(u.describe() for u in self.must_unchecked)
            )
        if self.must_not_run:
            bits.append(f"{len(self.must_not_run)} must rule(s) not in this partial run 部分実行で未実行")
        if self.must_failed:
            bits.append(
                f"{len(self.must_failed)} must rule(s) with findings 指摘あり "
                f"(violated {self.violated}, not evidenced {self.not_evidenced})"
            )
        return f"{head} — " + " | ".join(bits)

    def as_dict(self) -> dict:
        """JSON-ready form (the ``verdict`` object of ``audit --json``)."""
        return {
            "verdict": self.code,
            "label_ja": self.label_ja,
            "label_en": self.label_en,
            "must_rules": self.must_rules,
            "must_failed": list(self.must_failed),
            "must_not_checked": [
                {"rule_id": u.rule_id, "status": u.status, "missing_columns": list(u.missing_columns)}
                for u in self.must_unchecked
            ],
            "must_not_run": list(self.must_not_run),
            "missing_columns": list(self.missing_columns),
            "violated": self.violated,
            "not_evidenced": self.not_evidenced,
            "partial": bool(self.coverage and self.coverage.partial),
        }

    def _repr_html_(self) -> str:  # notebooks show the verdict as a coloured box
        colour = {"compliant": "#2e7d32", "not_compliant": "#c0392b", "incomplete": "#b36b00"}[self.code]
        items = "".join(f"<li>{html.escape(u.describe())}</li>" for u in self.must_unchecked)
        partial = (
            f"<p>{html.escape(self.coverage.label())}</p>" if self.coverage and self.coverage.partial else ""
        )
        return (
            f'<div style="border-left:6px solid {colour};padding:.4em .8em">'
            f'<b style="color:{colour};font-size:1.3em">判定 {html.escape(self.label)}</b>'
            f"<p>{html.escape(self.summary_ja())}<br>{html.escape(self.summary_en())}</p>{partial}"
            f"{'<ul>' + items + '</ul>' if items else ''}</div>"
        )

    def __str__(self) -> str:
        return self.line()


def compute_verdict(rows: Iterable[Any], coverage: RunCoverage | None = None) -> Verdict:
    """The verdict from rule result rows (``rule_results`` rows, frame records or :class:`RuleResult`).

    Each row needs ``rule_id``, ``level``, ``status`` (passed / failed / not_applicable /
    not_evaluable / error), ``violated`` and ``not_evidenced``; ``missing_columns`` and
    ``message`` are used when present. ``coverage`` marks a partial run: its must rules not run
    make the verdict *incomplete*.
    """
    must_failed, must_unchecked, should_failed, should_unchecked = [], [], [], []
    must_rules = violated = not_evidenced = 0
    for r in rows:
        level, status, rid = _get(r, "level"), _get(r, "status"), _get(r, "rule_id")
        if status not in CHECKED + UNCHECKED:
            status = "error"  # an unknown status is never read as a pass
        if level == "must":
            must_rules += 1
        if status in UNCHECKED:
            u = UncheckedRule(
                rid,
                level,
                status,
                _columns(_get(r, "missing_columns")),
                str(_get(r, "message", "") or ""),
                str(_get(r, "title_ja", "") or ""),
                str(_get(r, "title_en", "") or ""),
            )
            (must_unchecked if level == "must" else should_unchecked).append(u)
            continue
        bad = int(_get(r, "violated", 0) or 0), int(_get(r, "not_evidenced", 0) or 0)
        if status == "failed" or sum(bad):
            (must_failed if level == "must" else should_failed).append(rid)
        if level == "must":
            violated += bad[0]
            not_evidenced += bad[1]
    not_run = coverage.not_run_of("must") if coverage and coverage.partial else ()
    if must_unchecked or not_run:
        code = "incomplete"
    elif must_failed:
        code = "not_compliant"
    elif must_rules == 0:
        code = "incomplete"  # no must rule at all: nothing shows compliance
    else:
        code = "compliant"
    return Verdict(
        code,
        must_rules,
        tuple(must_failed),
        tuple(must_unchecked),
        tuple(should_failed),
        tuple(should_unchecked),
        violated,
        not_evidenced,
        coverage,
    )
