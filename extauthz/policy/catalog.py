"""Which model groups a requested name makes LiteLLM run, read from the same config file.

A grant names model groups, but LiteLLM does not always run the group a caller names: the proxy
applies ``litellm_settings.model_alias_map``; the router takes a deployment's ``model_info.id``,
``router_settings.model_group_alias`` and a deployment's provider model
(``litellm_params.model``); and when a call fails it tries the group's fallbacks
(``fallbacks``, ``context_window_fallbacks``, ``content_policy_fallbacks``, and
``default_fallbacks`` for every group). :meth:`ModelCatalog.runs` follows all of these, in
LiteLLM 1.108's order, so the decision can require every model a request may reach to be granted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

DEFAULT_GROUP = "*"
"""The fallbacks key LiteLLM's router uses for ``default_fallbacks`` (they apply to any group)."""


@dataclass(frozen=True, slots=True)
class ModelCatalog:
    """The name-resolution tables of one config; empty tables resolve every name to itself."""

    model_names: frozenset[str] = frozenset()
    alias_map: Mapping[str, str] = field(default_factory=dict)  # litellm_settings.model_alias_map
    group_alias: Mapping[str, str] = field(default_factory=dict)  # router model_group_alias
    deployment_ids: Mapping[str, str] = field(default_factory=dict)  # model_info.id -> group
    provider_models: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # model -> groups
    fallbacks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # group -> fallbacks
    forced: tuple[str, ...] = ()  # general_settings.completion_model: runs whatever is asked
    # Answers for the config's own model names (bounded by the config, never caller-chosen).
    _known_runs: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False)

    def runs(self, name: str) -> tuple[str, ...]:
        """``name`` and every model group a request for it may run, in the order found."""
        known = self._known_runs.get(name)
        if known is not None:
            return known
        found = self._resolve(name)
        if name in self.model_names:
            self._known_runs[name] = found
        return found

    def _resolve(self, name: str) -> tuple[str, ...]:
        found = [name]
        pending = [name]
        first = True
        while pending:
            current = pending.pop(0)
            if first and current in self.alias_map:  # the proxy maps once, before the router
                current = self.alias_map[current]
                _add(found, pending, current)
            first = False
            for group in self._groups(current):
                _add(found, pending, group)
                for target in self.fallbacks.get(group, ()) + self.fallbacks.get(DEFAULT_GROUP, ()):
                    _add(found, pending, target)
        return tuple(found)

    def _groups(self, name: str) -> tuple[str, ...]:
        """Groups the router takes deployments from (``_common_checks_available_deployment``)."""
        if name not in self.model_names and name in self.deployment_ids:
            return (self.deployment_ids[name],)
        target = self.group_alias.get(name, name)
        if target in self.model_names:
            return (target,)
        return self.provider_models.get(target) or (target,)

    @property
    def known_names(self) -> tuple[str, ...]:
        """Every name the config gives a model by (for check-config's reach report)."""
        names = [
            *self.model_names,
            *self.alias_map,
            *self.group_alias,
            *self.deployment_ids,
            *self.provider_models,
        ]
        return tuple(dict.fromkeys(sorted(names)))


def _add(found: list[str], pending: list[str], name: str) -> None:
    if name not in found:
        found.append(name)
        pending.append(name)


def merge_fallbacks(
    entries: Iterable[object], default: Iterable[object]
) -> tuple[dict[str, tuple[str, ...]], list[str]]:
    """LiteLLM's ``[{group: [fallback, ...]}]`` lists (and ``default_fallbacks``) as one table.

    Returns the table and a problem per malformed entry (the config is refused with them).
    """
    table: dict[str, list[str]] = {}
    problems: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict):
            problems.append(f"fallbacks entry {entry!r} is not a mapping {{group: [models]}}")
            continue
        for group, targets in entry.items():
            values = [targets] if isinstance(targets, str) else targets
            if not isinstance(group, str) or not isinstance(values, list) or not all(
                isinstance(v, str) for v in values
            ):
                problems.append(f"fallbacks entry for {group!r} must map a name to model names")
                continue
            table.setdefault(group, []).extend(values)
    for target in default:
        if isinstance(target, str):
            table.setdefault(DEFAULT_GROUP, []).append(target)
        else:
            problems.append(f"default_fallbacks entry {target!r} is not a model name")
    return {group: tuple(dict.fromkeys(targets)) for group, targets in table.items()}, problems
