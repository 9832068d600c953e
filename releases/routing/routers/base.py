"""The router interface: how a traffic split reaches the data plane.

A router is told a `Split` (what share of which users the canary version serves) and must be
able to say what it currently applies (`read_back`), so the control plane can check that the
data plane does what it was told. Routers are called from tasks after the database commit, may
be called twice for the same split (a retried task) and may receive an old split late (a slow
worker): `apply` is idempotent and refuses a split older than the one applied.

Splits are ordered by `(canary_id, generation)`: the generation counts the splits of one canary
and only grows, and a later canary of a model has a larger id (a model has at most one active
canary), so the first split of a new canary supersedes the last split of the previous one.

Errors are `RouterError`s: `TransientRouterError` when retrying may succeed (network, disk
full, data plane busy), `PermanentRouterError` when it cannot (bad configuration, corrupt state,
a stale split).

New kinds live in `releases/routers/<kind>.py` and are named in `_KINDS` below, so that asking
for a kind imports only that adapter and its dependencies.
"""

from __future__ import annotations

import abc
import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

SPLIT_SCHEMA = 1
STRATEGIES = ("random", "cohort", "region", "account_tier")
# The register's rule for model names (releases.models.SLUG_RE): routers use the name in file
# names, upstream names and URLs, so nothing else may get through.
MODEL_NAME_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


class RouterError(Exception):
    """The data plane did not take the split. `transient` says whether a retry may help."""

    transient: ClassVar[bool] = False


class TransientRouterError(RouterError):
    transient = True


class PermanentRouterError(RouterError):
    transient = False


class StaleSplitError(PermanentRouterError):
    """A split older than the one the router applies: a late push that must not win."""


@dataclass(frozen=True)
class Split:
    """What the data plane should do for one model: `percent` of the eligible users (those
    matching the segmentation, everyone under `random`), by sticky user hash, go to the canary
    version; everyone else to the production version. 0 % is a rolled-back or stopped canary."""

    model: str
    production_version: str
    canary_version: str
    percent: int
    canary_id: int
    generation: int
    strategy: str = "random"
    values: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        # Values arrive as lists from JSON and from Canary.segmentation; a tuple keeps the split
        # hashable and immutable.
        object.__setattr__(self, "values", tuple(self.values))
        problem = _split_problem(self)
        if problem:
            raise ValueError(f"invalid split: {problem}")

    @property
    def order(self) -> tuple[int, int]:
        return (self.canary_id, self.generation)

    @property
    def segmentation(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "values": list(self.values)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SPLIT_SCHEMA,
            "model": self.model,
            "production_version": self.production_version,
            "canary_version": self.canary_version,
            "percent": self.percent,
            "segmentation": self.segmentation,
            "canary_id": self.canary_id,
            "generation": self.generation,
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Split:
        """Raises ValueError for anything but a split this module wrote."""
        if not isinstance(value, Mapping):
            raise ValueError("a split is a JSON object")
        expected = {
            "schema", "model", "production_version", "canary_version", "percent", "segmentation",
            "canary_id", "generation",
        }
        if set(value) != expected:
            raise ValueError(f"a split has exactly the fields {', '.join(sorted(expected))}")
        if value["schema"] != SPLIT_SCHEMA:
            raise ValueError(f"unsupported split schema {value['schema']!r}")
        segmentation = value["segmentation"]
        if not isinstance(segmentation, Mapping) or set(segmentation) != {"strategy", "values"}:
            raise ValueError("segmentation must be {strategy, values}")
        if not isinstance(segmentation["values"], list):
            raise ValueError("segmentation values must be a list")
        return cls(
            model=value["model"],
            production_version=value["production_version"],
            canary_version=value["canary_version"],
            percent=value["percent"],
            canary_id=value["canary_id"],
            generation=value["generation"],
            strategy=segmentation["strategy"],
            values=tuple(segmentation["values"]),
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _split_problem(split: Split) -> str | None:
    if not isinstance(split.model, str) or not MODEL_NAME_RE.match(split.model):
        return f"model {split.model!r} is not a register model name"
    for name in ("production_version", "canary_version"):
        version = getattr(split, name)
        if not isinstance(version, str) or not version or len(version) > 64:
            return f"{name} must be a non-empty string"
    if not _is_int(split.percent) or not 0 <= split.percent <= 100:
        return f"percent must be a whole number from 0 to 100, not {split.percent!r}"
    if not _is_int(split.canary_id) or split.canary_id < 0:
        return f"canary_id must be a non-negative whole number, not {split.canary_id!r}"
    if not _is_int(split.generation) or split.generation < 0:
        return f"generation must be a non-negative whole number, not {split.generation!r}"
    if split.strategy not in STRATEGIES:
        return f"strategy must be one of {', '.join(STRATEGIES)}"
    if split.strategy == "random" and split.values:
        return "random segmentation takes no values"
    if split.strategy != "random" and not split.values:
        return f"{split.strategy} segmentation needs at least one value"
    if any(not isinstance(v, str) or not v for v in split.values):
        return "segmentation values must be non-empty strings"
    if len(set(split.values)) != len(split.values):
        return "segmentation values must not repeat"
    return None


@dataclass(frozen=True)
class AppliedSplit:
    """The router's receipt. `changed` is False when the split was already in place (a retry);
    `location` says where it went (a file, an upstream, a URL) for the audit record."""

    split: Split
    changed: bool
    location: str


class Router(abc.ABC):
    kind: ClassVar[str]

    @abc.abstractmethod
    def apply(self, split: Split) -> AppliedSplit:
        """Make the data plane route by `split`. Idempotent; refuses an older split
        (StaleSplitError). Raises RouterError on failure."""

    @abc.abstractmethod
    def read_back(self, model: str) -> Split | None:
        """The split the data plane applies for the model now, or None if it was never told."""

    def manual_override(self, model: str) -> str:
        """What a person does by hand to send all of the model's traffic to production when
        pushes fail: named in the P1 incident of an unconfirmed rollback."""
        return f"set the {self.kind} router's canary weight for {model} to 0% by hand in the data plane"


# kind -> "module:ClassName"; imported on first use.
_KINDS: dict[str, str] = {
    "file": "releases.routing.routers.file:FileRouter",
    "nginx": "releases.routing.routers.nginx:NginxRouter",
    "webhook": "releases.routing.routers.webhook:WebhookRouter",
}
_REGISTERED: dict[str, type[Router]] = {}


def register_router(kind: str, cls: type[Router]) -> None:
    """Add a router kind at run time (tests, plug-ins)."""
    _REGISTERED[kind] = cls


def router_kinds() -> tuple[str, ...]:
    return tuple(sorted(set(_KINDS) | set(_REGISTERED)))


def get_router(kind: str, **config: Any) -> Router:
    """A router of the given kind, built from its configuration (keyword arguments of its class).
    An unknown kind or a bad configuration is a PermanentRouterError."""
    cls = _REGISTERED.get(kind)
    if cls is None:
        target = _KINDS.get(kind)
        if target is None:
            raise PermanentRouterError(f"no router kind {kind!r}; known kinds: {', '.join(router_kinds())}")
        module_name, _, class_name = target.partition(":")
        cls = getattr(importlib.import_module(module_name), class_name)
    try:
        return cls(**config)
    except TypeError as exc:
        raise PermanentRouterError(f"bad configuration for the {kind} router: {exc}") from exc
