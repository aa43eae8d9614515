"""Question data: the embedded FanOutQA-derived sets, file loaders and seeded samplers.

The embedded sets (``recal_gym/data/embedded/``) are derived from FanOutQA (Zhu et al., ACL 2024)
and released under CC BY-SA 4.0; see ``embedded/ATTRIBUTION.md`` and ``embedded/LICENSE-DATA``.
"""

from __future__ import annotations

from recal_gym.data.loaders import (
    REQUIRED_FIELDS,
    ROW_FIELDS,
    QuestionSet,
    embedded_manifest,
    embedded_names,
    load_embedded,
    load_hf_dataset,
    load_jsonl,
    load_questions,
    load_router_r1_parquet,
    preprocess_question,
)
from recal_gym.data.sampling import group_by_source, sample_mixture, sample_per_dataset, train_test_split

__all__ = [
    "REQUIRED_FIELDS",
    "ROW_FIELDS",
    "QuestionSet",
    "embedded_manifest",
    "embedded_names",
    "group_by_source",
    "load_embedded",
    "load_hf_dataset",
    "load_jsonl",
    "load_questions",
    "load_router_r1_parquet",
    "preprocess_question",
    "sample_mixture",
    "sample_per_dataset",
    "train_test_split",
]
