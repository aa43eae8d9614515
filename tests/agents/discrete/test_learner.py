"""DiscreteLearner: it learns the better model, the loss moves log-probs the right way, determinism, resume."""

from __future__ import annotations

import pytest
import torch

from agents.discrete.config import DiscreteConfig
from agents.discrete.learner import DiscreteLearner
from agents.grpo.estimator_config import RecalConfig
from recal_gym.errors import InvalidConfig
from tests.agents.discrete.conftest import GOOD, toy_envs


def _learner(estimator: str = "grpo", seed: int = 0, **kw) -> DiscreteLearner:
    envs, state, questions = toy_envs(4, seed=seed)
    base = {"questions_per_step": 8, "group_size": 4, "steps": 15, "lr": 1e-2, "hidden_size": 16}
    cfg = DiscreteConfig(estimator=estimator, seed=seed, **{**base, **kw})
    return DiscreteLearner(cfg, envs, questions.ids()[:30], source_names=["toy"], reward_state=state)


@pytest.mark.parametrize("estimator", ["grpo", "recal"])
def test_policy_learns_to_ask_the_better_model(estimator: str) -> None:
    # Uniform over 3 first actions, the good model starts at 1/3. A share >= 0.75 at the last step in each of
    # 3 seeds has probability < 1e-9 without learning (binomial tail of 32 draws, cubed). Reached by step ~6.
    for seed in range(3):
        learner = _learner(estimator, seed, steps=10)
        good = learner.envs[0].models.index(GOOD)
        history = [learner.step() for _ in range(learner.config.steps)]
        assert history[-1][f"actions/first/{good}"] >= 0.75, (estimator, seed, history[-1])
        assert history[-1]["episode/em"] > history[0]["episode/em"]


def test_update_raises_logprob_of_positive_advantage_actions() -> None:
    learner = _learner(lr=1e-3, epochs=1, minibatches=1)
    batch = learner.rollout()
    adv = learner.estimator(batch.rewards, learner.calibration)
    logp_fn = learner.policy

    def taken() -> torch.Tensor:
        from agents.discrete.policy import taken_log_prob_and_entropy

        with torch.no_grad():
            return taken_log_prob_and_entropy(logp_fn(batch.obs), batch.masks, batch.actions)[0]

    before = taken()
    learner.update(batch, adv)
    delta = ((taken() - before) * batch.step_mask).sum(dim=1)  # (N,)
    assert float((adv.advantages * delta).sum()) > 0.0  # first-order ascent on Σ A·log π
    pos, neg = adv.advantages > 0, adv.advantages < 0
    assert float(delta[pos].mean()) > 0.0 > float(delta[neg].mean())


def test_same_seed_same_run_different_seed_different_run() -> None:
    a, b, c = _learner(seed=3), _learner(seed=3), _learner(seed=4)
    ma = [a.step() for _ in range(3)]
    assert ma == [b.step() for _ in range(3)]
    assert all(torch.equal(p, q) for p, q in zip(a.policy.parameters(), b.policy.parameters(), strict=True))
    assert ma != [c.step() for _ in range(3)]


def test_checkpoint_resume_gives_identical_steps() -> None:
    a = _learner(estimator="recal", seed=1, recal=RecalConfig(dataset_stats="running"))
    for _ in range(2):
        a.step()
    state = a.state_dict()
    b = _learner(estimator="recal", seed=1, recal=RecalConfig(dataset_stats="running"))
    b.load_state_dict(state)
    assert b.reward_state == a.reward_state and b.step_count == 2
    assert [a.step() for _ in range(2)] == [b.step() for _ in range(2)]
    assert all(torch.equal(p, q) for p, q in zip(a.policy.parameters(), b.policy.parameters(), strict=True))


def test_metrics_are_flat_floats_with_namespaced_keys() -> None:
    m = _learner().step()
    assert all(isinstance(v, float) for v in m.values())
    assert {"episode/reward", "episode/em", "loss/policy", "adv/std", "reward/total/mean", "step"} <= set(m)
    assert sum(v for k, v in m.items() if k.startswith("actions/first/")) == pytest.approx(1.0)


def test_evaluation_is_greedy_and_consumes_no_randomness() -> None:
    learner = _learner()
    qids = learner.question_ids[:6]
    state = learner.sample_generator.get_state()
    first = learner.evaluate(learner.envs, qids, [0] * 6)
    assert torch.equal(state, learner.sample_generator.get_state())
    again = learner.evaluate(learner.envs, qids, [0] * 6)
    assert [e.actions for e in first] == [e.actions for e in again]


def test_too_few_questions_or_no_envs_raise() -> None:
    envs, state, questions = toy_envs(1)
    cfg = DiscreteConfig(questions_per_step=8, group_size=2)
    with pytest.raises(InvalidConfig, match="questions_per_step"):
        DiscreteLearner(cfg, envs, questions.ids()[:3], source_names=["toy"])
    with pytest.raises(InvalidConfig, match="env"):
        DiscreteLearner(cfg, [], questions.ids(), source_names=["toy"])
