"""Step 5 of an audit: GX's counts must equal the stored per-stratum counts.

A rule whose counts disagree, whose expectation raised, or that no suite holds is stored as
``error`` — never as a pass.
"""

from __future__ import annotations

from toolkit.audit.results import RuleResult, status_of


def reconcile(
    results: dict[str, RuleResult],
    evaluable: set[str],
    gx_counts: dict[str, dict],
    stored: dict[str, tuple[int, int, int]],
) -> None:
    """Set counts and final status of every evaluable rule in ``results`` (in place)."""
    for rid in evaluable:
        res = results[rid]
        gxc = gx_counts.get(rid)
        den, vio, ne = stored.get(rid, (0, 0, 0))
        res.denominator, res.violated, res.not_evidenced = den, vio, ne
        if gxc is None:
            res.status, res.message = "error", "the expectations suites hold no expectation for this rule"
        elif "error" in gxc:
            res.status, res.message = "error", gxc["error"]
        elif (gxc.get("denominator"), gxc.get("violated"), gxc.get("not_evidenced")) != (den, vio, ne):
            res.status = "error"
            res.message = (
                f"GX counts {gxc} differ from the stored counts "
                f"(denominator={den}, violated={vio}, not_evidenced={ne})"
            )
        else:
            res.status = status_of(den, vio, ne)
