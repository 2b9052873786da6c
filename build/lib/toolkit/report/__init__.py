"""Stage 4, report: what people read, built from the run store only.

- :mod:`~toolkit.report.data`: frames from the run store (rules, providers, trends, changes);
- :mod:`~toolkit.report.stats`: Wilson intervals and funnel limits; :mod:`~toolkit.report.charts`: Altair;
- :mod:`~toolkit.report.text`: bilingual wording; ``templates/``: the Jinja pages;
- :mod:`~toolkit.report.html`: the self-contained HTML report; :mod:`~toolkit.report.feedback`: per-doctor sheets.
"""
