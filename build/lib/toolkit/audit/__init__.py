"""Stage 3, audit: run the suites inside DuckDB and append the run to the run store.

:func:`toolkit.audit.run.run_audit` is a short list of named steps (plan, check tables, findings,
GX counts, reconcile, store); :mod:`~toolkit.audit.dq` holds the data-quality checks and
:mod:`~toolkit.audit.export` the violations export.
"""
