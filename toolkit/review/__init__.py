"""Stage 4, review: marks on findings that carry across runs (guideline V-3-(2), quality evaluation and feedback).

- :mod:`~toolkit.review.states`: the states (open, acknowledged, corrected, justified) and allowed changes;
- :mod:`~toolkit.review.marks`: validate and append marks (``review_marks``, append-only), current state;
- :mod:`~toolkit.review.summary`: per-rule counts by state for a run, "marked corrected, still present";
- :mod:`~toolkit.review.sheet`: ``ocaudit review export`` / ``import`` (Excel, validated by sheet row).

Reads the run store (after the audit); the report and feedback sheets read these counts.
"""
