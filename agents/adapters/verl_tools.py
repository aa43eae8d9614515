"""verl plug-ins: the route action as a verl tool, and an agent loop that plays whole RouterQA episodes.

**``RouteTool``** follows verl's tool API (``verl.tools.base_tool.BaseTool``: ``create``/``execute``/
``calc_reward``/``release``, ``name``, ``tool_schema``) and is configured in verl's tool-config YAML
(``examples/verl/route_tool.yaml``; ``class_name: agents.adapters.verl_tools.RouteTool``). Its call is the
candidate LLM: ``route(model, query)`` sends ``query`` to a model of the RouterQA pool (simulated, replayed or
served over HTTP, as ``recal_gym.pools`` builds it) and returns the reply. Under verl's generic
``tool_agent`` loop it is a plain tool (the question comes from the row's
``extra_info.tools_kwargs.route.create_kwargs.question_id``); RouterQA's decomposed reward needs the env's
bookkeeping, which the agent loop below provides.

**``RouterQAAgentLoop``** (registered as ``routerqa_agent``; ``examples/verl/agent_loop.yaml``) plays each
sample's RouterQA episode with :class:`~agents.adapters.verl_episode.RouterQAEpisodes`: the policy writes the
RouterQA protocol (``<search> model:query </search>``, ``<answer> ... </answer>``), routing turns are answered
by the route tool from ``actor_rollout_ref.rollout.multi_turn.tool_config_path`` (whose config also holds the
env settings), ``<information>`` splices get ``response_mask`` 0, and the terminal rewards go to
``extra_fields["routerqa"]`` for :mod:`agents.adapters.verl_reward`. The class subclasses verl's
``AgentLoopBase``, so it is built on first access (``agents.adapters.verl_tools.RouterQAAgentLoop`` imports
verl then); nothing here imports verl at module import time.

Not run against real verl (it cannot be installed here): the tool and the episode core are tested on
verl-shaped inputs; the thin ``AgentLoopBase`` subclass is not (see the README).
"""

from __future__ import annotations

import asyncio
import functools
import threading
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

from agents.adapters.verl_episode import EPISODE_KEY, RouterQAEnvConfig, RouterQAEpisodes
from recal_gym.errors import InvalidData
from recal_gym.types import CallRequest, CallResult

__all__ = ["ROUTE_TOOL_SCHEMA", "RouteTool", "ToolText", "routerqa_agent_loop_class"]

ROUTE_TOOL_SCHEMA: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "route",
        "description": "Send a query to one candidate LLM of the pool and return its reply.",
        "parameters": {
            "type": "object",
            "properties": {
                "model": {"type": "string", "description": "A model name listed in the prompt."},
                "query": {"type": "string", "description": "The sub-question for that model."},
            },
            "required": ["model", "query"],
        },
    },
}
"""The OpenAI-format schema of the route tool (verl's ``tool_schema``), as in ``examples/verl/route_tool.yaml``."""


class ToolText(NamedTuple):
    """A text tool response with the attributes verl reads from its ``ToolResponse`` (used without verl)."""

    text: str
    """The reply."""
    image: Any = None
    """Always None."""
    video: Any = None
    """Always None."""


def _tool_response(text: str) -> Any:
    try:
        from verl.tools.schemas import ToolResponse
    except ImportError:
        return ToolText(text)
    return ToolResponse(text=text)


class RouteTool:
    """verl tool ``route(model, query)``: one call to a candidate LLM of the RouterQA pool.

    Args:
        config: verl's tool ``config`` mapping: ``type: native`` plus the keys of
            :class:`~agents.adapters.verl_episode.RouterQAEnvConfig` (``dataset``, ``pool``, ``pool_seed``, ...;
            the agent loop builds its env from the same keys).
        tool_schema: verl's parsed ``tool_schema`` (an ``OpenAIFunctionToolSchema``), a schema mapping, or
            ``None`` for :data:`ROUTE_TOOL_SCHEMA`.

    Raises:
        InvalidConfig: an unknown config key or value.
    """

    def __init__(self, config: Mapping[str, Any] | None = None, tool_schema: Any = None) -> None:
        """Build the candidate pool and the question table."""
        from recal_gym.data import load_questions
        from recal_gym.pools import build_pool
        from recal_gym.pools.options import PoolOptions

        settings = {k: v for k, v in dict(config or {}).items() if k != "type"}
        self.env_config = RouterQAEnvConfig.from_mapping(settings, where="route tool config")
        self.questions = load_questions(self.env_config.dataset)
        self.pool = build_pool(self.env_config.pool or None, PoolOptions(seed=self.env_config.pool_seed))
        self.pool.attach_questions(self.questions.rows)
        self.tool_schema = ROUTE_TOOL_SCHEMA if tool_schema is None else tool_schema
        schema = self.tool_schema.model_dump() if hasattr(self.tool_schema, "model_dump") else self.tool_schema
        self.name: str = str(schema["function"]["name"])
        self._instances: dict[str, str] = {}
        self._lock = threading.Lock()  # one candidate call at a time: backends need not be thread-safe

    def get_openai_tool_schema(self) -> Any:
        """The tool schema verl renders into the prompt."""
        return self.tool_schema

    async def create(self, instance_id: str | None = None, **kwargs: Any) -> tuple[str, Any]:
        """Start an instance for one trajectory; ``create_kwargs={"question_id": ...}`` binds its question."""
        instance_id = instance_id or uuid.uuid4().hex
        qid = dict(kwargs.get("create_kwargs") or {}).get("question_id")
        if qid is not None:
            self.questions.by_id(str(qid))  # an unknown id fails here, with close matches
            self._instances[instance_id] = str(qid)
        return instance_id, _tool_response("")

    async def call(self, request: CallRequest) -> CallResult:
        """Answer one routed query in a worker thread (the agent loop's routing turns come here)."""

        def run() -> CallResult:
            with self._lock:
                return self.pool.call(request)

        return await asyncio.to_thread(run)

    async def execute(self, instance_id: str, parameters: Mapping[str, Any], **kwargs: Any) -> tuple[Any, float, dict]:
        """Call ``parameters["model"]`` with ``parameters["query"]``; return ``(response, 0.0, metrics)``.

        A bad call is part of the episode, never an exception: an unknown model, a missing argument or a failed
        backend call answers with a one-line explanation and ``metrics["ok"] = 0.0``.

        Raises:
            InvalidData: the instance has no question (pass ``create_kwargs={"question_id": ...}``).
        """
        from recal_gym.resolver import resolve_model

        qid = self._instances.get(instance_id)
        if qid is None:
            raise InvalidData(
                f"route tool instance {instance_id!r} has no question; give the dataset row "
                "extra_info.tools_kwargs.route.create_kwargs.question_id (routerqa_verl_rows does)"
            )
        model_name, query = parameters.get("model"), parameters.get("query")
        if not isinstance(model_name, str) or not isinstance(query, str):
            return _tool_response("route needs a string 'model' and a string 'query'."), 0.0, {"ok": 0.0}
        model = resolve_model(model_name, self.pool.spec.name_table("lenient"))
        if model is None:
            known = ", ".join(self.pool.spec.names)
            return _tool_response(f"Unknown model {model_name!r}; models: {known}."), 0.0, {"ok": 0.0}
        result = await self.call(CallRequest(model=model, query=query, question=self.questions.by_id(qid)))
        if not result.ok:
            return _tool_response(f"The call to {model} failed ({result.error or 'failed'})."), 0.0, {"ok": 0.0}
        return _tool_response(result.text), 0.0, {"ok": 1.0, "completion_tokens": float(result.completion_tokens)}

    async def calc_reward(self, instance_id: str, **kwargs: Any) -> float:
        """No tool-level reward: the episode's reward comes from the env (``agents.adapters.verl_reward``)."""
        return 0.0

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        """Forget the instance."""
        self._instances.pop(instance_id, None)


@functools.cache
def routerqa_agent_loop_class() -> type:
    """Build (once) and register verl's ``routerqa_agent`` agent loop; see the module docstring.

    Raises:
        ImportError: verl is not installed.
    """
    try:
        from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, register
        from verl.tools.utils.tool_registry import initialize_tools_from_config
    except ImportError as err:
        raise ImportError("RouterQAAgentLoop needs verl: pip install verl (see verl's install guide)") from err

    class RouterQAAgentLoop(AgentLoopBase):  # type: ignore[misc, valid-type]
        """verl agent loop playing one RouterQA episode per sample (``agents.adapters.verl_tools``)."""

        _episodes: RouterQAEpisodes | None = None  # verl builds a loop per sample; envs are shared per process
        _route: RouteTool | None = None

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            cls = type(self)
            if cls._episodes is None:
                path = self.rollout_config.multi_turn.tool_config_path
                tools = initialize_tools_from_config(path) if path else []
                cls._route = next((t for t in tools if isinstance(t, RouteTool)), None)
                config = cls._route.env_config if cls._route is not None else RouterQAEnvConfig()
                pool = cls._route.pool if cls._route is not None else None
                cls._episodes = RouterQAEpisodes(config, self.tokenizer, pool=pool)

        async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> Any:
            extra = dict(kwargs.get("extra_info") or {})
            if "question_id" not in extra:
                raise InvalidData("routerqa_agent needs extra_info.question_id in every row (routerqa_verl_rows)")
            request_id = uuid.uuid4().hex

            async def generate(ids: list[int], params: dict[str, Any]) -> tuple[list[int], list[float] | None]:
                out = await self.server_manager.generate(request_id=request_id, prompt_ids=ids, sampling_params=params)
                return list(out.token_ids), (list(out.log_probs) if out.log_probs else None)

            cls = type(self)
            assert cls._episodes is not None  # set in __init__
            episode = await cls._episodes.play(
                extra["question_id"],
                generate,
                sampling_params=sampling_params,
                response_length=int(self.rollout_config.response_length),
                call=cls._route.call if cls._route is not None else None,
            )
            return AgentLoopOutput(
                prompt_ids=episode.prompt_ids,
                response_ids=episode.response_ids,
                response_mask=episode.response_mask,
                response_logprobs=episode.response_logprobs,
                num_turns=episode.num_turns,
                metrics={},
                extra_fields={EPISODE_KEY: episode.episode},
            )

    register("routerqa_agent")(RouterQAAgentLoop)
    return RouterQAAgentLoop


def __getattr__(name: str) -> Any:
    """``RouterQAAgentLoop`` is built from verl's base class on first access (Hydra ``_target_`` resolution)."""
    if name == "RouterQAAgentLoop":
        return routerqa_agent_loop_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
