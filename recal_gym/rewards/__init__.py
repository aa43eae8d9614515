"""The reward pipeline: answer metrics, format rules, reward specs and gates, reward state, scoring.

Modules: ``answer_metrics`` (SQuAD normalisation, EM, F1, containment), ``format_rules`` (F1-F9 and
the route component), ``spec`` (:class:`RewardSpec`, presets, the gate and the fold), ``state``
(:class:`RewardState`: balance EMA and cost window) and ``scoring`` (:func:`score_episode`,
:func:`rescore`).
"""

from __future__ import annotations
