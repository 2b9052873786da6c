"""Stage 2, rules: the rule catalogue as data and everything that turns it into checks.

- ``rules.yaml`` + :mod:`~toolkit.rules.catalogue`: rule id, section, level, scope, entity, titles and
  guidance in Japanese and English (validated on load);
- :mod:`~toolkit.rules.sql`: each rule as a (scope, check) SQL pair, the check tables, the strata;
- :mod:`~toolkit.rules.facts`: per-record facts shared by the rules and the survey (one source);
- :mod:`~toolkit.rules.suites`: the GX suites (``expectations/``) built from the catalogue;
- :mod:`~toolkit.rules.gx_fix`: the minimal GX 1.24 + duckdb-engine fix;
- :mod:`~toolkit.rules.attestation`: the checklist of items no log can show.
"""
