"""ocaudit: audit and evidence analytics for Japanese online medical care (オンライン診療).

Stages (one module each): contract → ingest → catalogue/audit → store → charts/report/feedback/survey.
"""

__version__ = "0.1.0"
