"""Settings, arms and budgets of the ReCal learning study (``benchmarks/study_recal.py``).

Two settings share one compact six-model pool (the Router-R1 models under short names and
one-line descriptors, which shrinks the router prompt from ~2,300 to ~1,150 byte tokens) and one fixed
question pool from the embedded FanOutQA-derived data: the first 64 single-hop questions (by id) of at
most 30 bytes and the 16 shortest multi-hop questions. A byte-level policy of ~0.3 M parameters cannot
learn to copy unseen questions into a route within a CPU budget, but it can learn to route a fixed set
of questions, so the study measures how well each estimator *optimises* routing on that set:

- ``embedded``: 48 of the single-hop and the 16 multi-hop questions under their own data sources, with
  the pool's default profile mapping (single-hop → PopQA figures, multi-hop → HotpotQA figures,
  ``docs/pools.md`` §3);
- ``heterogeneous``: the 64 single-hop questions split in two data sources of 32, ``easy_qa`` (an "easy"
  profile, EM 0.60-0.90) and ``hard_qa`` (a "hard" profile, EM 0.03-0.20): same question
  distribution, very different base rates, which is where per-dataset normalisation should matter.

Arms: ``grpo``, ``gdpo``, ``recal`` and ``recal`` with one stage removed in turn (``docs/learner.md`` §4.5).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recal_gym.data import load_questions
from recal_gym.pools.spec import default_pool_spec
from recal_gym.types import QARow

__all__ = [
    "ARMS",
    "BUDGETS",
    "COMPACT_NAMES",
    "SETTINGS",
    "Budget",
    "Setting",
    "eval_question_ids",
    "pool_rows",
    "write_setting_files",
]

ARMS: dict[str, dict[str, Any]] = {
    "grpo": {"estimator": "grpo"},
    "gdpo": {"estimator": "gdpo"},
    "recal": {"estimator": "recal"},
    "no_hierarchy": {"estimator": "recal", "recal.hierarchy": False},
    "no_componentwise": {"estimator": "recal", "recal.componentwise": False},
    "no_variance_weighting": {"estimator": "recal", "recal.variance_weighting": False},
    "batch_norm": {"estimator": "recal", "recal.final_norm": "batch"},
}
"""Arm name → TrainConfig overrides (``agents.grpo.config.apply_overrides`` keys). ``batch_norm`` = Stage N
over the whole batch instead of per dataset."""

COMPACT_NAMES: dict[str, tuple[str, str]] = {
    "Qwen2.5-7B-Instruct": ("qwen-7b", "Qwen 7B, general."),
    "LLaMA-3.1-8B-Instruct": ("llama-8b", "Llama 8B, fast."),
    "LLaMA-3.1-70B-Instruct": ("llama-70b", "Llama 70B, broad knowledge."),
    "Mistral-7B-Instruct": ("mistral-7b", "Mistral 7B, compact."),
    "Mixtral-8x22B-Instruct": ("mixtral", "Mixtral 8x22B MoE, strong."),
    "Gemma-2-27B-Instruct": ("gemma-27b", "Gemma 27B, QA."),
}
"""Router-R1 display name → (short name, one-line descriptor) of the study pool."""

_MAX_SINGLE_BYTES = 30
_EASY_HARD: dict[str, tuple[float, float]] = {
    "qwen-7b": (0.60, 0.03),
    "llama-8b": (0.70, 0.06),
    "llama-70b": (0.90, 0.20),
    "mistral-7b": (0.65, 0.05),
    "mixtral": (0.88, 0.18),
    "gemma-27b": (0.80, 0.12),
}
"""Short name → (EM on the "easy" profile, EM on the "hard" profile); the ranking follows Router-R1's PopQA row."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """Compute budget of one study (identical for every arm)."""

    seeds: int
    """Seeds per (setting, arm); each seed has its own policy init, warm start and pool seed."""
    pretrain_steps: int
    """Warm start stage A: short-sequence cloning steps (``study_pretrain.py``), batch 32."""
    warmstart_steps: int
    """Warm start stage B: env demonstration steps on the full prompt (``Learner.warm_start``)."""
    steps: int
    """RL steps per run."""
    lr: float
    """RL learning rate (AdamW, constant)."""
    warmstart_lr: float
    """Learning rate of warm-start stage B (stage A uses 3e-3)."""
    questions_per_step: int
    """Questions per RL step."""
    group_size: int
    """Rollouts per question G."""
    eval_every: int
    """Evaluate on the fixed evaluation questions every this many RL steps (and at steps 0 and ``steps``)."""
    hidden_size: int
    """Width of the tiny Llama policy."""
    num_layers: int
    """Layers of the tiny Llama policy."""
    max_new_tokens: int
    """Sampled tokens per turn."""


BUDGETS: dict[str, Budget] = {
    "full": Budget(
        seeds=5,
        pretrain_steps=250,
        warmstart_steps=120,
        steps=30,
        lr=2e-4,
        warmstart_lr=1e-3,
        questions_per_step=2,
        group_size=8,
        eval_every=10,
        hidden_size=128,
        num_layers=2,
        max_new_tokens=128,
    ),
    "quick": Budget(
        seeds=1,
        pretrain_steps=2,
        warmstart_steps=1,
        steps=2,
        lr=2e-4,
        warmstart_lr=1e-3,
        questions_per_step=2,
        group_size=2,
        eval_every=1,
        hidden_size=32,
        num_layers=1,
        max_new_tokens=16,
    ),
}
"""``full`` is the committed study; ``quick`` is the smoke path (``--quick``, used by the test)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    """One study setting: a question source and a pool file."""

    name: str
    """``embedded`` or ``heterogeneous``."""
    dataset: str
    """``TrainConfig.dataset`` value."""
    pool: str
    """Path of the pool file (written by :func:`write_setting_files`)."""

    @property
    def sources(self) -> tuple[str, ...]:
        """Data sources of the setting, sorted (the learner's ``source_names``)."""
        return tuple(sorted(load_questions(self.dataset).datasets()))


SETTINGS: tuple[str, ...] = ("embedded", "heterogeneous")
"""Setting names, in report order."""


def _compact_pool(heterogeneous: bool) -> dict[str, Any]:
    spec = default_pool_spec().to_dict()
    for model in spec["models"]:
        model["name"], model["descriptor"] = COMPACT_NAMES[model["name"]]
        model["aliases"] = []
        if heterogeneous:
            easy, hard = _EASY_HARD[model["name"]]
            tokens = model["mean_tokens"]["popqa"]
            model["profile_em"] = {**model["profile_em"], "easy": easy, "hard": hard}
            model["mean_tokens"] = {**model["mean_tokens"], "easy": tokens, "hard": tokens}
    spec["alias_rules"] = []
    spec["name"] = "study-heterogeneous" if heterogeneous else "study-embedded"
    if heterogeneous:
        spec["dataset_profile_map"] = {**spec["dataset_profile_map"], "easy_qa": "easy", "hard_qa": "hard"}
    return spec


def pool_rows() -> tuple[list[QARow], list[QARow]]:
    """The study's fixed question pool: 64 short single-hop questions and the 16 shortest multi-hop ones."""
    single = sorted(load_questions("embedded:fanoutqa_single"), key=lambda r: r.question_id)
    multi = sorted(load_questions("embedded:fanoutqa_multi"), key=lambda r: (len(r.question), r.question_id))
    return [r for r in single if len(r.question.encode()) <= _MAX_SINGLE_BYTES][:64], multi[:16]


def _row_dict(row: QARow, *, source: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "question_id": row.question_id,
        "question": row.question,
        "golden_answers": list(row.golden_answers),
        "data_source": row.data_source,
        "decomposition": [
            {"question": s.question, "golden_answers": list(s.golden_answers)} for s in row.decomposition
        ],
        "hops": row.hops,
    }
    if source is not None:
        d.update(question_id=source + "/" + row.question_id.split("/", 1)[1], data_source=source)
    return d


def _setting_rows(name: str) -> list[dict[str, Any]]:
    single, multi = pool_rows()
    if name == "embedded":
        return [_row_dict(r) for r in single[:48] + multi]
    return [_row_dict(r, source="easy_qa" if i % 2 == 0 else "hard_qa") for i, r in enumerate(single)]


def write_setting_files(directory: Path) -> dict[str, Setting]:
    """Write the study pools and the heterogeneous question file into ``directory``; return the settings."""
    directory.mkdir(parents=True, exist_ok=True)
    settings = {}
    for name in SETTINGS:
        pool = directory / f"pool_{name}.json"
        pool.write_text(json.dumps(_compact_pool(name == "heterogeneous"), indent=1, sort_keys=True))
        path = directory / f"questions_{name}.jsonl"
        path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in _setting_rows(name)))
        settings[name] = Setting(name=name, dataset=str(path), pool=str(pool))
    return settings


def eval_question_ids(setting: Setting) -> tuple[str, ...]:
    """The fixed evaluation questions: every question of the setting, sorted by id."""
    return tuple(sorted(load_questions(setting.dataset).ids()))
