"""Lock-step episodes, the rollout batch and the one info -> RewardBatch helper."""

from __future__ import annotations

import pytest
import torch

from agents.discrete.policy import sample_actions
from agents.discrete.rollout import make_batch, reward_batch_from_infos, run_episodes
from recal_gym.errors import InvalidData
from recal_gym.rewards import fold_reward
from tests.agents.discrete.conftest import toy_envs


def _info(source: str, raw: dict[str, float], gates: dict[str, float]) -> dict:
    return {
        "scored": True,
        "question_id": f"{source}/0",
        "data_source": source,
        "reward_components_raw": raw,
        "reward_gates": gates,
        "reward_components": {k: raw[k] * gates[k] for k in raw},
        "reward_weights": {k: {"format": 1.0, "answer": 1.0, "info": 0.1}[k] for k in raw},
    }


def test_reward_batch_oracle() -> None:
    infos = [
        _info("b", {"format": 0.0, "answer": 1.0, "info": 1.0}, {"format": 1.0, "answer": 1.0, "info": 1.0}),
        _info("a", {"format": -1.0, "answer": 1.0, "info": 1.0}, {"format": 1.0, "answer": 0.0, "info": 0.0}),
    ]
    rb = reward_batch_from_infos(infos, [7, 7], ["a", "b"])
    assert rb.names == ("format", "answer", "info")
    assert rb.raw.tolist() == [[0.0, 1.0, 1.0], [-1.0, 1.0, 1.0]]
    assert rb.gated.tolist() == [[0.0, 1.0, 1.0], [-1.0, 0.0, 0.0]]
    assert rb.scalar.tolist() == pytest.approx([1.1, -1.0])  # the left fold of weight × gated
    assert rb.group.tolist() == [7, 7] and rb.source.tolist() == [1, 0] and rb.source_names == ("a", "b")
    assert rb.weights.tolist() == pytest.approx([1.0, 1.0, 0.1])


def test_reward_batch_rejects_unknown_sources_mixed_components_and_unscored_steps() -> None:
    good = _info("a", {"format": 0.0, "answer": 1.0}, {"format": 1.0, "answer": 1.0})
    with pytest.raises(InvalidData, match="'zz'"):
        reward_batch_from_infos([good, {**good, "data_source": "zz"}], [0, 0], ["a"])
    other = _info("a", {"format": 0.0, "info": 1.0}, {"format": 1.0, "info": 1.0})
    with pytest.raises(InvalidData, match="same reward spec"):
        reward_batch_from_infos([good, other], [0, 0], ["a"])
    with pytest.raises(InvalidData, match="not a terminal"):
        reward_batch_from_infos([{**good, "scored": False}], [0], ["a"])


def test_episodes_respect_masks_and_the_batch_matches_the_env() -> None:
    envs, _, questions = toy_envs(3)
    gen = torch.Generator().manual_seed(0)
    qids = [questions.ids()[i % 5] for i in range(7)]  # more episodes than envs: three waves
    episodes = run_episodes(envs, lambda o, m: sample_actions(torch.zeros(m.shape), m, gen), qids, list(range(7)))
    assert [ep.question_id for ep in episodes] == qids
    for ep in episodes:
        assert all(mask[a] for mask, a in zip(ep.masks, ep.actions, strict=True))
        assert ep.actions[-1] == envs[0].answer_action and ep.info["scored"]
        assert ep.reward == fold_reward(ep.info["reward_components"], ep.info["reward_weights"])
    batch = make_batch(episodes, [0] * 7, ["toy"])
    n, t, d = batch.obs.shape
    assert (n, d) == (7, envs[0].observation_space.shape[0]) and t == max(len(ep.actions) for ep in episodes)
    lengths = batch.step_mask.sum(dim=1).tolist()
    assert lengths == [len(ep.actions) for ep in episodes]
    assert bool(batch.masks[batch.step_mask == 0].all())  # padding allows every action: no empty softmax
    assert bool(batch.masks.gather(2, batch.actions.unsqueeze(2)).squeeze(2)[batch.step_mask == 1].all())
    assert batch.rewards.scalar.tolist() == pytest.approx([ep.reward for ep in episodes])


def test_mismatched_lengths_raise() -> None:
    envs, _, questions = toy_envs(1)
    with pytest.raises(InvalidData, match="call seeds"):
        run_episodes(envs, lambda o, m: m.long().argmax(dim=1), questions.ids()[:2], [0])
