from __future__ import annotations

import numpy as np
import pytest

from envs.discrete import QueryFeaturizer, RouterQADiscreteEnv
from recal_gym.errors import AssetMissing, InvalidConfig


@pytest.fixture(scope="module")
def minilm():
    from agents.models.featurizers import MiniLMFeaturizer

    try:
        return MiniLMFeaturizer()
    except AssetMissing as err:
        pytest.skip(str(err))


@pytest.mark.assets
def test_minilm_embeddings_are_unit_384d_and_semantic(minilm) -> None:
    assert isinstance(minilm, QueryFeaturizer) and minilm.dim == 384
    x = minilm(["Who wrote Pride and Prejudice?", "Who is the author of Pride and Prejudice?", "How tall is K2?"])
    assert x.shape == (3, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert float(x[0] @ x[1]) > 0.8 > float(x[0] @ x[2])
    np.testing.assert_array_equal(
        x, minilm(["Who wrote Pride and Prejudice?", "Who is the author of Pride and Prejudice?", "How tall is K2?"])
    )
    assert minilm([]).shape == (0, 384)


@pytest.mark.assets
def test_discrete_env_accepts_minilm(minilm) -> None:
    env = RouterQADiscreteEnv(featurizer=minilm)
    obs, _ = env.reset(seed=0)
    assert obs in env.observation_space and obs.shape == (384 + len(env.models) + 3,)


@pytest.mark.parametrize(("field", "value"), [("batch_size", 0), ("max_length", True)])
def test_minilm_validation(field: str, value: object) -> None:
    from agents.models.featurizers import MiniLMFeaturizer

    with pytest.raises(InvalidConfig, match=field):
        MiniLMFeaturizer(**{field: value})  # type: ignore[arg-type]
