"""Stage ``dashboard``: the interactive dashboard (notebook ``00_dashboard`` served by Voilà).

:mod:`~toolkit.dashboard.queries` holds the bounded reads (pre-aggregated strata, record pages
with LIMIT/OFFSET), :mod:`~toolkit.dashboard.charts` the interactive Altair specs,
:mod:`~toolkit.dashboard.records` the record list widget, :mod:`~toolkit.dashboard.app` the app
and :mod:`~toolkit.dashboard.serve` ``ocaudit dashboard``. Only ``serve`` is imported by the CLI;
ipywidgets and Voilà (the ``notebooks`` extra) are needed only when the app runs.
"""
