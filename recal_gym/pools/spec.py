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
from recal_gym.types import MAX_CALL_TOKENS, AliasRule, NameMatching, NameTable

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
_POOL_KEYS = frozenset({"name", "models", "defaults", "alias_rules", "dataset_profile_map", "name_matching"})
_PROFILE_METADATA = frozenset(
    {"schema", "schema_version", "source", "units", "serving", "profile_datasets", "reference_results"}
)


def _finite(value: object) -> bool:
    """A number (not a bool) that converts to a finite float (a 400-digit int does not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _check_number(model: str, name: str, value: object, lo: float, hi: float, rule: str) -> None:
    if not (_finite(value) and lo <= value <= hi):  # type: ignore[operator]
        raise InvalidConfig(f"pool model {model!r}: field {name!r} must be {rule}, got {_short(value)}")


def _check_int(model: str, name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not (lo <= value <= hi):
        raise InvalidConfig(
            f"pool model {model!r}: field {name!r} must be an integer in [{lo}, {hi}], got {_short(value)}"
        )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:75] + " ...)"


def _check_text(field_name: str, value: str, model: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidConfig(
            f"pool model {model!r}: field {field_name!r} must be a non-empty string, got {_short(value)}"
        )
    if ":" in value and field_name == "name":
        raise InvalidConfig(f"pool model {value!r}: field 'name' must not contain ':' (it separates NAME:QUERY)")
    lowered = value.lower()
    if any(t in lowered for t in TAG_STRINGS) or neutralise(value)[1]:
        raise InvalidConfig(
            f"pool model {model!r}: field {field_name!r} {_short(value)} contains a reserved tag string; "
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
                f"pool model {self.name!r}: field 'backend' {self.backend!r} is not one of "
                f"{sorted(BACKEND_ENTRY_POINTS)}" + close_matches_hint(str(self.backend), BACKEND_ENTRY_POINTS)
            )
        for fname in ("price_per_1m_output", "price_per_1m_input"):
            _check_number(self.name, fname, getattr(self, fname), 0.0, math.inf, "a finite number >= 0")
        _check_number(self.name, "temperature", self.temperature, 0.0, 2.0, "a number in [0, 2]")
        _check_number(self.name, "top_p", self.top_p, 0.0, 1.0, "a number in (0, 1]")
        if self.top_p == 0.0:
            raise InvalidConfig(f"pool model {self.name!r}: field 'top_p' must be a number in (0, 1], got 0.0")
        _check_int(self.name, "max_tokens", self.max_tokens, 1, MAX_CALL_TOKENS)
        _check_int(self.name, "seed", self.seed, -(2**63), 2**63 - 1)
        for fname in ("model_id", "base_url", "api_key_env", "replay_path"):
            if not isinstance(getattr(self, fname), str):
                raise InvalidConfig(
                    f"pool model {self.name!r}: field {fname!r} must be a string, got {getattr(self, fname)!r}"
                )
        if not isinstance(self.listed, bool):
            raise InvalidConfig(f"pool model {self.name!r}: field 'listed' must be true or false, got {self.listed!r}")
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
            raise InvalidConfig(f"pool {self.name!r}: field 'models' must hold at least one entry")
        names = [m.name for m in self.models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InvalidConfig(f"pool {self.name!r}: field 'models' holds duplicate model names {dup}")
        if not any(m.listed for m in self.models):
            raise InvalidConfig(f"pool {self.name!r}: field 'listed' must be true for at least one model")
        if self.name_matching not in _NAME_MATCHING:
            raise InvalidConfig(
                f"pool {self.name!r}: field 'name_matching' {self.name_matching!r} is not one of {list(_NAME_MATCHING)}"
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
            raise InvalidConfig(f"a pool file must be a mapping with a 'models' list, got {_short(d)}")
        unknown = sorted(str(k) for k in set(d) - _POOL_KEYS - _PROFILE_METADATA)
        if unknown:
            raise InvalidConfig(
                f"unknown top-level field(s) {unknown}; allowed: {sorted(_POOL_KEYS)}"
                + close_matches_hint(unknown[0], _POOL_KEYS)
            )
        entries, defaults = d["models"], d.get("defaults") or {}
        if not isinstance(entries, list) or not entries:
            raise InvalidConfig(f"field 'models' must be a non-empty list of model entries, got {_short(entries)}")
        if not isinstance(defaults, Mapping):
            raise InvalidConfig(f"field 'defaults' must be a mapping of entry fields, got {_short(defaults)}")
        models = tuple(
            _model_from_dict({**defaults, **entry} if isinstance(entry, Mapping) else entry, i)
            for i, entry in enumerate(entries)
        )
        rules = d.get("alias_rules") or []
        if not isinstance(rules, list):
            raise InvalidConfig(f"field 'alias_rules' must be a list, got {_short(rules)}")
        profile_map = d.get("dataset_profile_map") or {}
        if not isinstance(profile_map, Mapping) or not all(isinstance(v, str) for v in profile_map.values()):
            raise InvalidConfig(
                f"field 'dataset_profile_map' must map data sources to names, got {_short(profile_map)}"
            )
        name = d.get("name", "pool")
        if not isinstance(name, str):
            raise InvalidConfig(f"field 'name' must be a string, got {_short(name)}")
        return cls(
            name=name,
            models=models,
            alias_rules=tuple(_rule_from_dict(r) for r in rules),
            dataset_profile_map=tuple((str(k), v) for k, v in profile_map.items()),
            name_matching=d.get("name_matching", "lenient"),
        )


_MODEL_KEYS = frozenset(f.name for f in PoolModel.__dataclass_fields__.values()) | {  # type: ignore[attr-defined]
    "api_id",
    "single_model",
    "derived_mean_completion_tokens",
    "seen_in_training",
}


def _field(e: Mapping[str, Any], key: str, default: Any, kind: str, model: str) -> Any:
    """``e[key]`` (``None`` or absent: ``default``) checked to be of ``kind``: str, number, int, bool, strs."""
    value = e.get(key)
    if value is None:
        return default
    ok = {
        "str": isinstance(value, str),
        "number": _finite(value),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "strs": isinstance(value, list | tuple) and all(isinstance(v, str) for v in value),
    }[kind]
    if not ok:
        rule = {
            "str": "a string",
            "number": "a finite number",
            "int": "an integer",
            "bool": "true or false",
            "strs": "a list of strings",
        }[kind]
        raise InvalidConfig(f"pool model {model!r}: field {key!r} must be {rule}, got {_short(value)}")
    return float(value) if kind == "number" else tuple(value) if kind == "strs" else value


def _figures(e: Mapping[str, Any], key: str, model: str) -> tuple[tuple[str, float], ...]:
    """A ``{profile dataset: number}`` mapping (``profile_em``, ``mean_tokens``) as sorted-by-file pairs."""
    value = e.get(key)
    if key == "profile_em" and value is None and e.get("single_model") is not None:
        single = e["single_model"]
        if not isinstance(single, Mapping) or not all(isinstance(v, Mapping) and "em" in v for v in single.values()):
            raise InvalidConfig(f"pool model {model!r}: field 'single_model' must map datasets to {{em: ...}}")
        value = {k: v["em"] for k, v in single.items()}
    if key == "mean_tokens" and value is None:
        value = e.get("derived_mean_completion_tokens")
    if value is None:
        return ()
    if not isinstance(value, Mapping) or not all(_finite(v) for v in value.values()):
        raise InvalidConfig(f"pool model {model!r}: field {key!r} must map datasets to numbers, got {_short(value)}")
    return tuple((str(k), float(v)) for k, v in value.items())


def _model_from_dict(e: Mapping[str, Any], index: int = 0) -> PoolModel:
    if not isinstance(e, Mapping):
        raise InvalidConfig(f"models[{index}]: a pool model entry must be a mapping, got {_short(e)}")
    raw_name = e.get("name")
    name = raw_name if isinstance(raw_name, str) else f"models[{index}]"
    unknown = sorted(str(k) for k in set(e) - _MODEL_KEYS)
    if unknown:
        raise InvalidConfig(
            f"pool model {name!r}: unknown field(s) {unknown}; allowed: {sorted(_MODEL_KEYS)}"
            + close_matches_hint(unknown[0], _MODEL_KEYS)
        )
    for req in ("name", "descriptor", "price_per_1m_output"):
        if e.get(req) is None:
            raise InvalidConfig(f"pool model {name!r}: missing required field {req!r}")
    model_id = _field(e, "model_id", None, "str", name)
    return PoolModel(
        name=_field(e, "name", "", "str", name),
        descriptor=_field(e, "descriptor", "", "str", name),
        price_per_1m_output=_field(e, "price_per_1m_output", 0.0, "number", name),
        price_per_1m_input=_field(e, "price_per_1m_input", 0.0, "number", name),
        backend=_field(e, "backend", "simulated", "str", name),
        model_id=model_id if model_id is not None else _field(e, "api_id", "", "str", name),
        base_url=_field(e, "base_url", "", "str", name),
        api_key_env=_field(e, "api_key_env", "", "str", name),
        temperature=_field(e, "temperature", 0.0, "number", name),
        top_p=_field(e, "top_p", 1.0, "number", name),
        seed=_field(e, "seed", 42, "int", name),
        max_tokens=_field(e, "max_tokens", 512, "int", name),
        aliases=_field(e, "aliases", (), "strs", name),
        listed=_field(e, "listed", True, "bool", name),
        profile_em=_figures(e, "profile_em", name),
        mean_tokens=_figures(e, "mean_tokens", name),
        replay_path=_field(e, "replay_path", "", "str", name),
        latency_ttft_s=_field(e, "latency_ttft_s", None, "number", name),
        latency_tokens_per_s=_field(e, "latency_tokens_per_s", None, "number", name),
    )


def _rule_from_dict(r: Mapping[str, Any]) -> AliasRule:
    kw = r.get("keywords") if isinstance(r, Mapping) else None
    if not isinstance(kw, list) or not kw or not all(isinstance(k, str) and k for k in kw):
        raise InvalidConfig(f"alias rule {_short(r)}: 'keywords' must be a non-empty list of strings")
    target = r.get("model")
    if target is not None and not isinstance(target, str):
        raise InvalidConfig(f"alias rule {_short(r)}: 'model' must be a model name or null, got {_short(target)}")
    return AliasRule(keywords=tuple(k.lower() for k in kw), model=None if target is None else str(target))


def load_pool_spec(source: str | Path | Mapping[str, Any] | PoolSpec) -> PoolSpec:
    """Load a pool from a profile name, a ``.json``/``.yaml``/``.yml`` file, a mapping or a spec.

    Args:
        source: ``"router-r1"`` (the packaged Router-R1 profile, all eight models), a file path,
            a pool-file mapping, or a :class:`PoolSpec` (returned unchanged).

    Raises:
        InvalidConfig: unknown profile name, unsupported suffix, or a malformed file (the message names
            the file, and the line of a syntax error or the model and field of a bad value).
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
    if not path.is_file():
        raise FileNotFoundError(f"pool file {text_source!r} does not exist (or is not a file)")
    try:
        return PoolSpec.from_dict(_parse_pool_file(path))
    except InvalidConfig as err:
        raise InvalidConfig(f"pool file {text_source}: {err}") from None


def _parse_pool_file(path: Path) -> Any:
    """Decode a pool file; syntax errors become :class:`InvalidConfig` with the line."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InvalidConfig(f"not UTF-8 text (byte offset {err.start}); save the file as UTF-8") from None
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise InvalidConfig(f"line {err.lineno}, column {err.colno}: not valid JSON ({err.msg})") from None
        except (ValueError, RecursionError) as err:
            raise InvalidConfig(f"not valid JSON ({type(err).__name__}: {err})") from None
    import yaml  # lazy: only pool files in YAML need it

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise InvalidConfig(f"{where}not valid YAML ({err.problem or err})") from None
    except (yaml.YAMLError, RecursionError) as err:
        raise InvalidConfig(f"not valid YAML ({type(err).__name__}: {err})") from None


def default_pool_spec() -> PoolSpec:
    """The offline default: the six listed Router-R1 models, simulated (``docs/pools.md``)."""
    spec = load_pool_spec("router-r1")
    return spec.only([m.name for m in spec.listed])
