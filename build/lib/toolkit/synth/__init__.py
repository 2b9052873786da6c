"""The seeded synthetic data generator and its ground truth (no stage imports it).

:mod:`~toolkit.synth.generate` writes a data set in chunks (:mod:`~toolkit.synth.chunk`), injects
violations (:mod:`~toolkit.synth.inject`) and computes the ground truth of every rule
(:mod:`~toolkit.synth.truth`) independently of the audit's SQL.
"""
