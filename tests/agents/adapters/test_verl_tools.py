"""The verl route tool and agent-loop entry (agents.adapters.verl_tools), loaded from the example YAML files.

verl is not installed: ``load_tools`` repeats what verl's ``initialize_tools_from_config`` does with a native
tool entry (import ``class_name``, call it with ``config=`` and ``tool_schema=``), and the tool is driven with
the calls verl's ``tool_agent`` loop makes (``create(create_kwargs=...)``, ``execute(instance_id, args,
agent_data=...)``, ``release``).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.adapters import verl_tools
from agents.adapters.verl_episode import RouterQAEpisodes
from agents.adapters.verl_tools import ROUTE_TOOL_SCHEMA, RouteTool
from agents.models.tiny_model import build_tiny_tokenizer
from recal_gym.errors import InvalidConfig, InvalidData
from recal_gym.types import CallRequest
from tests.agents.adapters.scripted import ScriptedEngine
from tests.agents.adapters.test_verl_episode import FakeServer, _generate, _kinds

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "verl"


def load_tools(path: Path) -> list[Any]:
    """Load native tools as verl does: import class_name, instantiate with config and tool_schema."""
    tools = []
    for entry in yaml.safe_load(path.read_text())["tools"]:
        assert entry["config"]["type"] == "native"
        module, _, name = entry["class_name"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        tools.append(cls(config=entry["config"], tool_schema=entry.get("tool_schema")))
    return tools


@pytest.fixture(scope="module")
def tool() -> RouteTool:
    (route,) = load_tools(EXAMPLES / "route_tool.yaml")
    return route


@pytest.fixture(scope="module")
def qid(tool: RouteTool) -> str:
    return sorted(tool.questions.ids())[0]


def test_the_example_yaml_builds_the_tool(tool: RouteTool) -> None:
    assert isinstance(tool, RouteTool) and tool.name == "route"
    assert tool.get_openai_tool_schema() == ROUTE_TOOL_SCHEMA  # the YAML and the module agree
    assert tool.env_config.max_routed_turns == 4 and tool.env_config.reward == "recal"


def test_execute_calls_the_candidate_llm(tool: RouteTool, qid: str) -> None:
    async def session() -> tuple[Any, ...]:
        instance, _ = await tool.create(create_kwargs={"question_id": qid})
        args = {"model": "Mixtral-8x22B-Instruct", "query": "Who wrote it?"}
        good = await tool.execute(instance, args, agent_data=None)
        alias = await tool.execute(instance, {"model": "mixtral", "query": "Who wrote it?"})
        unknown = await tool.execute(instance, {"model": "gpt-9", "query": "q"})
        malformed = await tool.execute(instance, {"query": 3})
        reward = await tool.calc_reward(instance)
        await tool.release(instance)
        return good, alias, unknown, malformed, reward

    good, alias, unknown, malformed, reward = asyncio.run(session())
    direct = tool.pool.call(
        CallRequest(model="Mixtral-8x22B-Instruct", query="Who wrote it?", question=tool.questions.by_id(qid))
    )
    assert good[0].text == direct.text and good[1] == 0.0 and good[2]["ok"] == 1.0
    assert alias[0].text == direct.text  # the pool's lenient name matching, as in the env
    assert unknown[0].text.startswith("Unknown model 'gpt-9'; models: ") and unknown[2] == {"ok": 0.0}
    assert "needs a string 'model'" in malformed[0].text and reward == 0.0


def test_execute_needs_the_rows_question(tool: RouteTool) -> None:
    async def session() -> Any:
        instance, _ = await tool.create()
        return await tool.execute(instance, {"model": "Mixtral-8x22B-Instruct", "query": "q"})

    with pytest.raises(InvalidData, match=r"create_kwargs\.question_id"):
        asyncio.run(session())
    with pytest.raises(KeyError):
        asyncio.run(tool.create(create_kwargs={"question_id": "no/such/question"}))


def test_episodes_through_the_tool_equal_episodes_through_the_env_pool(tool: RouteTool) -> None:
    tokenizer = build_tiny_tokenizer()
    config = tool.env_config
    through_tool = RouterQAEpisodes(config, tokenizer, pool=tool.pool)
    through_env = RouterQAEpisodes(config, tokenizer)
    questions = sorted(tool.questions.ids())[:2]
    kinds = {q: 0 for q in _kinds(through_env, questions)}  # every question routes

    def play(episodes: RouterQAEpisodes, call: Any) -> list[Any]:
        engine = ScriptedEngine(tokenizer, kinds)
        return [
            asyncio.run(
                episodes.play(q, _generate(FakeServer(engine), q), sampling_params={}, response_length=8192, call=call)
            )
            for q in questions
        ]

    a, b = play(through_tool, tool.call), play(through_env, None)
    assert [x.episode["n_calls"] for x in a] == [1.0, 1.0]
    assert a == b


def test_tool_config_errors_name_the_key() -> None:
    with pytest.raises(InvalidConfig, match=r"route tool config: unknown key\(s\) \['pool_sede'\].*'pool_seed'"):
        RouteTool(config={"type": "native", "pool_sede": 1})


def test_the_agent_loop_yaml_and_its_verl_dependency() -> None:
    (entry,) = yaml.safe_load((EXAMPLES / "agent_loop.yaml").read_text())
    assert entry["name"] == "routerqa_agent"
    module, _, attr = entry["_target_"].rpartition(".")
    assert importlib.import_module(module) is verl_tools and attr == "RouterQAAgentLoop"
    if importlib.util.find_spec("verl") is None:
        with pytest.raises(ImportError, match="pip install verl"):
            getattr(verl_tools, attr)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        verl_tools.Nope  # noqa: B018


def test_the_trainer_yaml_points_at_the_plugins() -> None:
    config = yaml.safe_load((EXAMPLES / "routerqa_recal.yaml").read_text())
    assert config["algorithm"]["adv_estimator"] == "recal"
    rollout = config["actor_rollout_ref"]["rollout"]
    root = EXAMPLES.parents[1]
    assert (root / rollout["multi_turn"]["tool_config_path"]).is_file()
    assert (root / rollout["agent"]["agent_loop_config_path"]).is_file()
    assert rollout["agent"]["default_agent_loop"] == "routerqa_agent"
    assert (root / config["custom_reward_function"]["path"]).is_file()
    hook = config["ray_kwargs"]["ray_init"]["runtime_env"]["worker_process_setup_hook"]
    module, _, name = hook.rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))
