"""Train a tiny, randomly initialised router with TRL's ``GRPOTrainer`` and ReCal advantages, on CPU.

A runnable smoke example of ``agents.adapters.trl`` (a few seconds; no download, no GPU)::

    python examples/trl_grpo_tiny.py --steps 2 --out /tmp/trl-tiny

The model is config-built (``agents.models.tiny_model``), so its completions are junk and most rewards are the
format penalty; the point is the wiring: RouterQA prompts → TRL generation → six ``raw_<component>``
reward functions that play each completion in ``RouterQA-v0`` → ReCal advantages replacing TRL's.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["build_dataset", "run"]


def build_dataset(num_questions: int, seed: int) -> Any:
    """A ``datasets.Dataset`` of RouterQA prompts with ``question_id`` and ``data_source`` columns."""
    import gymnasium as gym
    from datasets import Dataset

    import recal_gym  # noqa: F401 - registers RouterQA-v0

    env = gym.make("RouterQA-v0")
    rows = []
    for k in range(num_questions):
        prompt, info = env.reset(seed=seed + k)
        rows.append({"prompt": prompt, "question_id": info["question_id"], "data_source": info["data_source"]})
    env.close()
    return Dataset.from_list(rows)


def run(
    output_dir: str | Path,
    *,
    steps: int = 2,
    num_questions: int = 4,
    num_generations: int = 4,
    seed: int = 0,
    reward_funcs: list[Any] | None = None,
) -> Any:
    """Build the tiny model and dataset, train ``steps`` GRPO steps with ReCal advantages; return the trainer.

    Args:
        output_dir: Where the tiny model and TRL's run directory go.
        steps: Optimiser steps.
        num_questions: Prompts in the dataset.
        num_generations: G, completions per prompt.
        seed: Seed of the model weights, the question draw and TRL.
        reward_funcs: The six ``raw_<component>`` functions; ``None`` plays completions in ``RouterQA-v0``.
    """
    from transformers import AutoModelForCausalLM
    from trl import GRPOConfig

    from agents.adapters.trl import RouterQAScorer, component_reward_funcs, recal_grpo_trainer_class
    from agents.models.tiny_model import build_tiny_model, load_tiny_tokenizer
    from recal_gym.rewards import make_spec

    out = Path(output_dir)
    model_dir = build_tiny_model(out / "model", max_position_embeddings=4096, seed=seed)
    tokenizer = load_tiny_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    args = GRPOConfig(
        output_dir=str(out / "run"),
        per_device_train_batch_size=num_generations,
        num_generations=num_generations,
        max_completion_length=24,
        max_steps=steps,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        seed=seed,
        temperature=1.0,
        reward_weights=list(make_spec("recal").weights),  # TRL's logged "reward" = the ungated fold
    )
    if reward_funcs is None:
        reward_funcs = component_reward_funcs(RouterQAScorer(), kind="raw")
    trainer_cls = recal_grpo_trainer_class()
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=build_dataset(num_questions, seed),
        processing_class=tokenizer,
        reward_funcs=reward_funcs,
        estimator="recal",
    )
    trainer.train()
    return trainer


def main() -> None:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--out", default="/tmp/recal-trl-tiny")
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    trainer = run(a.out, steps=a.steps, seed=a.seed)
    step = trainer.last_recal
    print(f"trained {a.steps} steps; last batch advantages: {step.advantages.tolist() if step else None}")


if __name__ == "__main__":
    main()
