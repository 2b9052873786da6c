"""The result records of an audit: one :class:`RuleResult` per rule, one :class:`AuditRun` per run.

Every output (terminal table, JSON summary, run store, report, survey) is built from these.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

from toolkit import __version__
from toolkit.audit.verdict import RunCoverage, Verdict, compute_verdict


@dataclass
class RuleResult:
    """The outcome of one rule in one run (one row of ``rule_results``)."""

    rule_id: str
    section: str
    level: str
    entity: str
    title_en: str
    title_ja: str
    status: str
    denominator: int | None = None
    violated: int | None = None
    not_evidenced: int | None = None
    missing_columns: list[str] = field(default_factory=list)
    message: str = ""

    @property
    def compliance_rate(self) -> float | None:
        """(denominator − violated − not evidenced) / denominator, or None when nothing in scope."""
        if not self.denominator:
            return None
        return (self.denominator - (self.violated or 0) - (self.not_evidenced or 0)) / self.denominator


@dataclass
class AuditRun:
    """What :func:`run_audit` stored."""

    run_id: str
    as_of: dt.date
    started_at: dt.datetime
    finished_at: dt.datetime
    results: list[RuleResult]
    n_violations: int
    coverage: RunCoverage | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> Verdict:
        """The run's verdict (:func:`toolkit.audit.verdict.compute_verdict`)."""
        return compute_verdict(self.results, self.coverage)

    def summary(self) -> dict:
        """JSON-ready per-rule summary."""
        return {
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat(),
            "toolkit_version": __version__,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "verdict": self.verdict.as_dict(),
            "partial": bool(self.coverage and self.coverage.partial),
            "rules": [{**asdict(r), "compliance_rate": r.compliance_rate} for r in self.results],
        }


def status_of(denominator: int, violated: int, not_evidenced: int) -> str:
    """A rule's status from its counts: not_applicable (nothing in scope), failed or passed."""
    if denominator == 0:
        return "not_applicable"
    return "failed" if violated + not_evidenced else "passed"
