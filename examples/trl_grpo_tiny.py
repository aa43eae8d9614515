"""Train a tiny router with TRL's ``GRPOTrainer`` through multi-turn RouterQA episodes and ReCal advantages, on CPU.

A runnable example of ``agents.adapters.trl_rollout`` and ``agents.adapters.trl`` (no download, no GPU)::

    python examples/trl_grpo_tiny.py --steps 4 --out /tmp/trl-tiny

1. **Warm start.** The config-built tiny Llama first clones scripted demonstrations for ``--warmstart-steps``
   steps (the ``agents`` learner's supervised warm start, ``docs/learner.md`` §10.3), or loads the weights of a
   learner checkpoint with ``--init <dir>`` (e.g. ``recal-gym train --preset tiny ... --out runs/t`` writes
   ``runs/t/warmstart/``). A random model never follows the protocol, so every completion would get the same
   format penalty, zero advantages and zero loss; after the warm start some episodes route, some answer and
   some break the format, so groups differ.
2. **GRPO in TRL.** ``RouterQARollout`` plays each prompt's episode with the trainer's model (turn → env step →
   ``<information>`` splice → next turn), masks the splices out of the loss (``env_mask``) and passes the env's
   raw components to the ``raw_<component>`` reward functions; the ReCal trainer replaces TRL's advantages by
   the ``recal`` estimator's.

Each step prints TRL's loss and ``frac_reward_zero_std``, the advantage spread and the batch mean of every raw
reward component (``reward/<component>/mean``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

__all__ = ["run", "step_table"]


def run(
    output_dir: str | Path,
    *,
    steps: int = 4,
    questions_per_step: int = 2,
    num_generations: int = 4,
    num_questions: int = 8,
    warmstart_steps: int = 60,
    warmstart_batch: int = 8,
    init: str | Path | None = None,
    lr: float = 1e-3,
    seed: int = 0,
    engine_factory: Any = None,
) -> Any:
    """Warm-start the tiny policy, then train ``steps`` TRL GRPO steps on RouterQA episodes; return the trainer.

    Args:
        output_dir: Where the tiny model and TRL's run directory go.
        steps: TRL optimiser steps.
        questions_per_step: Questions per step (TRL's batch is ``questions_per_step * num_generations``).
        num_generations: G, episodes per question.
        num_questions: Questions in the training dataset.
        warmstart_steps: Supervised warm-start steps on scripted demonstrations (ignored with ``init``).
        warmstart_batch: Demonstrations per warm-start step.
        init: A learner checkpoint directory (``checkpoint.pt``) whose weights start the run.
        lr: AdamW learning rate of the GRPO steps.
        seed: Seed of the model weights, the warm start, the question draw, TRL and the rollout's sampler.
        engine_factory: The rollout's sampler factory (default: ``HFEngine`` on the trainer's model).
    """
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is experimental in TRL 1.16
    import torch
    from datasets import Dataset
    from trl import GRPOConfig

    from agents.adapters.trl import recal_grpo_trainer_class
    from agents.adapters.trl_rollout import RouterQARollout, rollout_reward_funcs, routerqa_rows
    from agents.grpo.config import preset
    from agents.grpo.learner import build_learner

    out = Path(output_dir)
    config = dataclasses.replace(
        preset("tiny"),
        seed=seed,
        questions_per_step=questions_per_step,
        group_size=num_generations,
        warmstart_steps=0 if init else warmstart_steps,
        warmstart_batch=warmstart_batch,
        init_checkpoint=str(init or ""),
    )
    learner = build_learner(config, out)  # the tiny policy, its tokenizer and batch-mode RouterQA envs
    learner.warm_start()  # a no-op when the weights came from ``init``
    tokenizer = learner.codec.tokenizer
    order = torch.randperm(len(learner.question_ids), generator=torch.Generator().manual_seed(seed))
    question_ids = [learner.question_ids[i] for i in order[:num_questions].tolist()]
    rollout = RouterQARollout(learner.envs, question_ids=question_ids, seed=seed, engine_factory=engine_factory)
    args = GRPOConfig(
        output_dir=str(out / "run"),
        per_device_train_batch_size=questions_per_step * num_generations,
        num_generations=num_generations,
        max_completion_length=(config.max_routed_turns + 1) * (config.max_new_tokens + config.max_obs_tokens),
        max_steps=steps,
        learning_rate=lr,
        beta=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        seed=seed,
        temperature=config.temperature,
        reward_weights=list(rollout.spec.weights),  # TRL's logged "reward" = the ungated fold of the raw components
    )
    trainer = recal_grpo_trainer_class()(
        model=learner.model,
        args=args,
        train_dataset=Dataset.from_list(routerqa_rows(learner.envs[0], question_ids)),
        processing_class=tokenizer,
        reward_funcs=rollout_reward_funcs(rollout.spec, kind="raw"),
        rollout_func=rollout,
        estimator="recal",
    )
    trainer.train()
    return trainer


def step_table(trainer: Any) -> str:
    """A Markdown table of the logged training steps: loss, zero-std share, advantage spread, raw components."""
    names = list(trainer.recal_spec.names)
    head = ["step", "loss", "frac_reward_zero_std", "adv/std", "episode/return", *(f"reward/{k}" for k in names)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for row in trainer.state.log_history:
        if "adv/std" not in row:
            continue
        cells = [row["step"], row["loss"], row["frac_reward_zero_std"], row["adv/std"], row["episode/return"]]
        cells += [row[f"reward/{k}/mean"] for k in names]
        lines.append("| " + " | ".join(f"{c:.3g}" if isinstance(c, float) else str(c) for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", default="/tmp/recal-trl-tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmstart-steps", type=int, default=60)
    parser.add_argument("--init", default=None, help="learner checkpoint directory to start from")
    a = parser.parse_args()
    trainer = run(a.out, steps=a.steps, seed=a.seed, warmstart_steps=a.warmstart_steps, init=a.init)
    print(step_table(trainer))


if __name__ == "__main__":
    main()
