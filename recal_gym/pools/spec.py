"""Pool description: one entry per candidate model, from a YAML/JSON file or Python objects.

A pool file is a mapping with ``name``, ``models`` (a list of entries), optional ``defaults``
(merged into every entry), ``alias_rules`` (ordered keyword rules, ``docs/protocol.md`` §8),
``dataset_profile_map`` and ``name_matching``. One entry::

    - name: Qwen2.5-7B-Instruct          # display name shown to the router
      descriptor: "Alibaba's 7B ..."     # one paragraph in the prompt
      backend: openai                    # simulated | openai | vllm | transformers | replay
      model_id: qwen/qwen2.5-7b-instruct # API id / served model name / local path
      base_url: http://127.0.0.1:8000/v1 # openai backend
      api_key_env: NIM_API_KEY           # name of an environment variable, never the key
      price_per_1m_output: 0.30          # USD per 1M output tokens (required)
      price_per_1m_input: 0.0            # optional
      temperature: 0.0
      max_tokens: 512
      aliases: [qwen-7b]                 # extra exact names
      listed: true                       # shown in the prompt

Adding a model is one entry. The Router-R1 profile file (``router_r1_pool.json``, fields ``api_id``,
``single_model``, ``derived_mean_completion_tokens``) is accepted as it is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from recal_gym.errors import InvalidConfig, UnknownModel, close_matches_hint
from recal_gym.pools.registry import BACKEND_ENTRY_POINTS
from recal_gym.protocol import TAG_STRINGS, neutralise
from recal_gym.types import AliasRule, NameMatching, NameTable

__all__ = [
    "BACKEND_NAMES",
    "BackendName",
    "PoolModel",
    "PoolSpec",
    "default_pool_spec",
    "load_pool_spec",
]

BackendName = Literal["simulated", "openai", "vllm", "transformers", "replay"]
"""Built-in backends; :func:`~recal_gym.pools.register_backend` adds more names."""
BACKEND_NAMES: tuple[str, ...] = ("simulated", "openai", "vllm", "transformers", "replay")
_NAME_MATCHING: tuple[str, ...] = ("exact", "lenient", "router-r1")
_PROFILES = {"router-r1": "router_r1_pool.json"}


def _check_text(field_name: str, value: str, model: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidConfig(f"pool model {model!r}: {field_name} must be a non-empty string, got {value!r}")
    if ":" in value and field_name == "name":
        raise InvalidConfig(f"pool model name {value!r} must not contain ':' (it separates NAME:QUERY)")
    lowered = value.lower()
    if any(t in lowered for t in TAG_STRINGS) or neutralise(value)[1]:
        raise InvalidConfig(
            f"pool model {model!r}: {field_name} {value!r} contains a reserved tag string; "
            f"reserved: {list(TAG_STRINGS)}"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolModel:
    """One candidate LLM of a pool."""

    name: str
    """Display name shown to the router (no ``:``, no reserved tags)."""
    descriptor: str
    """Paragraph shown in the prompt (no reserved tags)."""
    price_per_1m_output: float
    """USD per 1M output tokens; a call costs ``completion_tokens * price`` micro-dollars."""
    backend: BackendName = "simulated"
    """Which backend serves the model."""
    model_id: str = ""
    """API id (openai), served model name (vLLM), local directory (transformers) or replay key."""
    base_url: str = ""
    """Base URL of an OpenAI-compatible server, e.g. ``http://127.0.0.1:8000/v1``."""
    api_key_env: str = ""
    """Name of the environment variable that holds the API key (the key itself is never stored)."""
    price_per_1m_input: float = 0.0
    """USD per 1M input tokens (reported; Router-R1's cost counts output tokens only)."""
    temperature: float = 0.0
    """Call temperature (Router-R1: 0, Gemma-2-27B 0.1)."""
    top_p: float = 1.0
    """Call top-p."""
    seed: int = 42
    """Call seed."""
    max_tokens: int = 512
    """Maximum completion tokens per call."""
    aliases: tuple[str, ...] = ()
    """Extra names that resolve exactly (case-folded) to this model."""
    listed: bool = True
    """Shown in the prompt; unlisted models are resolvable and callable but not shown."""
    profile_em: tuple[tuple[str, float], ...] = ()
    """Simulated pool: published single-model EM per profile dataset."""
    mean_tokens: tuple[tuple[str, float], ...] = ()
    """Simulated pool: mean completion tokens per profile dataset."""
    replay_path: str = ""
    """Replay backend: JSONL/Parquet table recorded by ``recal-gym pool record``."""
    latency_ttft_s: float | None = None
    """Simulated pool: seconds to the first token (``None``: the simulated default, ``docs/pools.md`` §3)."""
    latency_tokens_per_s: float | None = None
    """Simulated pool: output tokens per second after the first (``None``: the simulated default)."""

    def __post_init__(self) -> None:
        """Validate the entry."""
        _check_text("name", self.name, self.name)
        _check_text("descriptor", self.descriptor, self.name)
        if self.backend not in BACKEND_ENTRY_POINTS:
            raise InvalidConfig(
                f"pool model {self.name!r}: backend {self.backend!r} is not one of {sorted(BACKEND_ENTRY_POINTS)}"
                + close_matches_hint(str(self.backend), BACKEND_ENTRY_POINTS)
            )
        for fname in ("price_per_1m_output", "price_per_1m_input"):
            v = getattr(self, fname)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise InvalidConfig(f"pool model {self.name!r}: {fname} must be a finite number >= 0, got {v!r}")
        if not (0.0 <= self.temperature <= 2.0):
            raise InvalidConfig(f"pool model {self.name!r}: temperature must be in [0, 2], got {self.temperature!r}")
        if not (0.0 < self.top_p <= 1.0):
            raise InvalidConfig(f"pool model {self.name!r}: top_p must be in (0, 1], got {self.top_p!r}")
        if self.max_tokens < 1:
            raise InvalidConfig(f"pool model {self.name!r}: max_tokens must be >= 1, got {self.max_tokens!r}")
        for alias in self.aliases:
            _check_text("alias", alias, self.name)
        for fname in ("latency_ttft_s", "latency_tokens_per_s"):
            v = getattr(self, fname)
            if v is not None and (
                isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0
                or (fname == "latency_tokens_per_s" and v == 0)
            ):  # fmt: skip
                raise InvalidConfig(
                    f"pool model {self.name!r}: {fname} must be a finite number > 0 (or null), got {v!r}"
                )

    @property
    def em_by_dataset(self) -> dict[str, float]:
        """``profile_em`` as a dict."""
        return dict(self.profile_em)

    @property
    def tokens_by_dataset(self) -> dict[str, float]:
        """``mean_tokens`` as a dict."""
        return dict(self.mean_tokens)


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolSpec:
    """A pool of candidate models, their resolver rules and their simulated-profile mapping."""

    name: str
    """Pool name (for logs)."""
    models: tuple[PoolModel, ...]
    """Entries in pool order (the prompt lists the ``listed`` ones in this order)."""
    alias_rules: tuple[AliasRule, ...] = ()
    """Ordered keyword rules of the lenient resolver."""
    dataset_profile_map: tuple[tuple[str, str], ...] = ()
    """Data source -> profile dataset of the simulated pool (``docs/pools.md`` §3)."""
    name_matching: NameMatching = "lenient"
    """Default resolver mode (the environment may override it)."""

    def __post_init__(self) -> None:
        """Validate the pool."""
        if not self.models:
            raise InvalidConfig(f"pool {self.name!r}: models must hold at least one entry")
        names = [m.name for m in self.models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InvalidConfig(f"pool {self.name!r}: duplicate model names {dup}")
        if not any(m.listed for m in self.models):
            raise InvalidConfig(f"pool {self.name!r}: at least one model must be listed")
        if self.name_matching not in _NAME_MATCHING:
            raise InvalidConfig(
                f"pool {self.name!r}: name_matching {self.name_matching!r} is not one of {list(_NAME_MATCHING)}"
            )

    @property
    def names(self) -> tuple[str, ...]:
        """Display names of every model, in pool order."""
        return tuple(m.name for m in self.models)

    @property
    def listed(self) -> tuple[PoolModel, ...]:
        """Models shown in the prompt, in pool order."""
        return tuple(m for m in self.models if m.listed)

    def model(self, name: str) -> PoolModel:
        """Return the entry with display name ``name``.

        Raises:
            UnknownModel: if no entry has that name (lists the names and close matches).
        """
        for m in self.models:
            if m.name == name:
                return m
        raise UnknownModel(
            f"model {name!r} is not in pool {self.name!r}; models: {list(self.names)}"
            + close_matches_hint(name, self.names)
        )

    def name_table(self, name_matching: NameMatching | None = None) -> NameTable:
        """Return the resolver table of this pool (recorded in every episode record)."""
        aliases = tuple((a, m.name) for m in self.models for a in (m.model_id, *m.aliases) if a)
        return NameTable(
            names=self.names,
            listed=tuple(m.name for m in self.listed),
            exact_aliases=aliases,
            alias_rules=self.alias_rules,
            name_matching=name_matching or self.name_matching,
        )

    def profile_for(self, data_source: str) -> str | None:
        """Profile dataset mapped to ``data_source``, or ``None`` when the pool has no mapping for it."""
        return dict(self.dataset_profile_map).get(data_source)

    def only(self, names: Sequence[str]) -> PoolSpec:
        """Return the pool restricted to ``names`` (in pool order)."""
        for n in names:
            self.model(n)
        return replace(self, models=tuple(m for m in self.models if m.name in set(names)))

    def with_backend(self, backend: BackendName, **fields: Any) -> PoolSpec:
        """Return a copy whose every model uses ``backend`` (and the given entry fields)."""
        return replace(self, models=tuple(replace(m, backend=backend, **fields) for m in self.models))

    def to_dict(self) -> dict[str, Any]:
        """Return the pool-file mapping of this spec (round-trips through :meth:`from_dict`)."""
        models = []
        for m in self.models:
            d: dict[str, Any] = {
                "name": m.name,
                "descriptor": m.descriptor,
                "backend": m.backend,
                "model_id": m.model_id,
                "base_url": m.base_url,
                "api_key_env": m.api_key_env,
                "price_per_1m_output": m.price_per_1m_output,
                "price_per_1m_input": m.price_per_1m_input,
                "temperature": m.temperature,
                "top_p": m.top_p,
                "seed": m.seed,
                "max_tokens": m.max_tokens,
                "aliases": list(m.aliases),
                "listed": m.listed,
                "replay_path": m.replay_path,
            }
            if m.profile_em:
                d["profile_em"] = dict(m.profile_em)
            if m.mean_tokens:
                d["mean_tokens"] = dict(m.mean_tokens)
            if m.latency_ttft_s is not None:
                d["latency_ttft_s"] = m.latency_ttft_s
            if m.latency_tokens_per_s is not None:
                d["latency_tokens_per_s"] = m.latency_tokens_per_s
            models.append(d)
        return {
            "name": self.name,
            "name_matching": self.name_matching,
            "models": models,
            "alias_rules": [{"keywords": list(r.keywords), "model": r.model} for r in self.alias_rules],
            "dataset_profile_map": dict(self.dataset_profile_map),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PoolSpec:
        """Build a pool from a pool-file mapping (see the module docstring).

        Raises:
            InvalidConfig: on a missing or malformed field, naming it.
        """
        if not isinstance(d, Mapping) or "models" not in d:
            raise InvalidConfig("a pool file must be a mapping with a 'models' list")
        defaults = dict(d.get("defaults") or {})
        models = tuple(_model_from_dict({**defaults, **entry}) for entry in d["models"])
        rules = tuple(_rule_from_dict(r) for r in d.get("alias_rules") or ())
        return cls(
            name=str(d.get("name", "pool")),
            models=models,
            alias_rules=rules,
            dataset_profile_map=tuple((str(k), str(v)) for k, v in (d.get("dataset_profile_map") or {}).items()),
            name_matching=d.get("name_matching", "lenient"),
        )


_MODEL_KEYS = frozenset(f.name for f in PoolModel.__dataclass_fields__.values()) | {  # type: ignore[attr-defined]
    "api_id",
    "single_model",
    "derived_mean_completion_tokens",
    "seen_in_training",
}


def _model_from_dict(e: Mapping[str, Any]) -> PoolModel:
    if not isinstance(e, Mapping):
        raise InvalidConfig(f"pool model entries must be mappings, got {e!r}")
    name = str(e.get("name", ""))
    unknown = sorted(set(e) - _MODEL_KEYS)
    if unknown:
        raise InvalidConfig(
            f"pool model {name!r}: unknown field(s) {unknown}; allowed: {sorted(_MODEL_KEYS)}"
            + close_matches_hint(unknown[0], _MODEL_KEYS)
        )
    for req in ("name", "descriptor", "price_per_1m_output"):
        if e.get(req) is None:
            raise InvalidConfig(f"pool model {name!r}: missing required field {req!r}")
    profile = e.get("profile_em")
    if profile is None and e.get("single_model"):
        profile = {k: v["em"] for k, v in e["single_model"].items()}
    tokens = e.get("mean_tokens", e.get("derived_mean_completion_tokens"))
    return PoolModel(
        name=name,
        descriptor=str(e["descriptor"]),
        price_per_1m_output=e["price_per_1m_output"],
        price_per_1m_input=e.get("price_per_1m_input", 0.0),
        backend=e.get("backend", "simulated"),
        model_id=str(e.get("model_id", e.get("api_id", "")) or ""),
        base_url=str(e.get("base_url", "") or ""),
        api_key_env=str(e.get("api_key_env", "") or ""),
        temperature=float(e.get("temperature", 0.0)),
        top_p=float(e.get("top_p", 1.0)),
        seed=int(e.get("seed", 42)),
        max_tokens=int(e.get("max_tokens", 512)),
        aliases=tuple(str(a) for a in e.get("aliases") or ()),
        listed=bool(e.get("listed", True)),
        profile_em=tuple((str(k), float(v)) for k, v in (profile or {}).items()),
        mean_tokens=tuple((str(k), float(v)) for k, v in (tokens or {}).items()),
        replay_path=str(e.get("replay_path", "") or ""),
        latency_ttft_s=e.get("latency_ttft_s"),
        latency_tokens_per_s=e.get("latency_tokens_per_s"),
    )


def _rule_from_dict(r: Mapping[str, Any]) -> AliasRule:
    kw = r.get("keywords") if isinstance(r, Mapping) else None
    if not kw or not all(isinstance(k, str) and k for k in kw):
        raise InvalidConfig(f"alias rule {r!r}: 'keywords' must be a non-empty list of strings")
    target = r.get("model")
    return AliasRule(keywords=tuple(k.lower() for k in kw), model=None if target is None else str(target))


def load_pool_spec(source: str | Path | Mapping[str, Any] | PoolSpec) -> PoolSpec:
    """Load a pool from a profile name, a ``.json``/``.yaml``/``.yml`` file, a mapping or a spec.

    Args:
        source: ``"router-r1"`` (the packaged Router-R1 profile, all eight models), a file path,
            a pool-file mapping, or a :class:`PoolSpec` (returned unchanged).

    Raises:
        InvalidConfig: unknown profile name, unsupported suffix, or a malformed file.
        FileNotFoundError: the file does not exist.
    """
    if isinstance(source, PoolSpec):
        return source
    if isinstance(source, Mapping):
        return PoolSpec.from_dict(source)
    text_source = str(source)
    if text_source in _PROFILES:
        raw = (
            resources.files("recal_gym.pools").joinpath("profiles").joinpath(_PROFILES[text_source]).read_text("utf-8")
        )
        return PoolSpec.from_dict(json.loads(raw))
    path = Path(text_source)
    if path.suffix not in (".json", ".yaml", ".yml"):
        raise InvalidConfig(
            f"pool {text_source!r} is neither a known profile {sorted(_PROFILES)} nor a .json/.yaml/.yml file"
            + close_matches_hint(text_source, _PROFILES)
        )
    text = path.read_text("utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
    else:
        import yaml  # lazy: only pool files in YAML need it

        data = yaml.safe_load(text)
    return PoolSpec.from_dict(data)


def default_pool_spec() -> PoolSpec:
    """The offline default: the six listed Router-R1 models, simulated (``docs/pools.md``)."""
    spec = load_pool_spec("router-r1")
    return spec.only([m.name for m in spec.listed])
