"""The look every chart shares (report, feedback, survey, notebooks): fonts with Japanese glyphs, no frame."""

from __future__ import annotations

import altair as alt

#: Fonts tried in order; the first two carry Japanese glyphs on Linux and macOS, the next two on Windows.
FONT = "Noto Sans CJK JP, Hiragino Sans, Yu Gothic, Meiryo, sans-serif"


def apply_theme(chart: alt.TopLevelMixin) -> alt.TopLevelMixin:
    """``chart`` with the shared font and without the view's frame."""
    return chart.configure(font=FONT).configure_view(stroke=None)
