"""Stage 5, survey: MHLW-style EC survey tables, small-cell suppression, packages and merging.

- :mod:`~toolkit.survey.tables`: the layout; :mod:`~toolkit.survey.counts`: exact counts (local only);
- :mod:`~toolkit.survey.suppression`, :mod:`~toolkit.survey.package`, :mod:`~toolkit.survey.charts`;
- :mod:`~toolkit.survey.run`: ``ocaudit survey ec`` and ``ocaudit survey merge``.
"""
