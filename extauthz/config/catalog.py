"""Build the model catalog (how LiteLLM resolves names) from a LiteLLM config, and report reach.

Reads only the keys that change which model runs: ``model_list[].model_info.id`` and
``litellm_params.model``, ``litellm_settings.model_alias_map``, ``model_group_alias`` and the
four fallback lists in ``router_settings`` (LiteLLM's router takes them from ``litellm_settings``
when ``router_settings`` does not set them), and ``general_settings.completion_model``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from extauthz.model import Role
from extauthz.policy.catalog import ModelCatalog, merge_fallbacks
from extauthz.policy.compiled import ModelRule

_FALLBACK_KEYS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")
_READ = {
    "litellm_settings": frozenset({"model_alias_map", "default_fallbacks", *_FALLBACK_KEYS}),
    "router_settings": frozenset({"model_group_alias", "default_fallbacks", *_FALLBACK_KEYS}),
}


def build_catalog(
    data: Mapping[str, Any],
    completion_model: str | None,
    problems: list[str],
    warnings: list[str],
) -> ModelCatalog:
    """The catalog of one parsed config (``completion_model`` as validated by the loader);
    malformed entries are appended to ``problems``, the keys of
    ``litellm_settings``/``router_settings`` it does not read to ``warnings``."""
    litellm = _mapping(data, "litellm_settings", problems)
    router = _mapping(data, "router_settings", problems)
    for section, values in (("litellm_settings", litellm), ("router_settings", router)):
        ignored = sorted(str(k) for k in values if k not in _READ[section])
        if ignored:
            warnings.append(
                f"ignored {section} keys (they do not change which model runs): "
                + ", ".join(ignored)
            )

    names: list[str] = []
    ids: dict[str, str] = {}
    provider: dict[str, list[str]] = {}
    entries = data.get("model_list") or []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("model_name"), str):
            continue  # the loader reports malformed entries
        name = entry["model_name"]
        names.append(name)
        info = entry.get("model_info")
        if isinstance(info, dict) and isinstance(info.get("id"), str):
            ids[info["id"]] = name
        params = entry.get("litellm_params")
        if isinstance(params, dict) and isinstance(params.get("model"), str):
            provider.setdefault(params["model"], []).append(name)

    alias_map = _string_map(litellm.get("model_alias_map"), "litellm_settings.model_alias_map",
                            problems)
    group_alias: dict[str, str] = {}
    raw_groups = router.get("model_group_alias") or {}
    if not isinstance(raw_groups, dict):
        problems.append("router_settings.model_group_alias: must be a mapping of alias to group")
        raw_groups = {}
    for alias, target in raw_groups.items():
        # LiteLLM takes a group name or {"model": group, "hidden": bool}.
        group = target.get("model") if isinstance(target, dict) else target
        if not isinstance(alias, str) or not isinstance(group, str):
            problems.append(f"router_settings.model_group_alias.{alias}: must name a model group")
            continue
        group_alias[alias] = group

    lists: list[object] = []
    for key in _FALLBACK_KEYS:
        value = router.get(key, litellm.get(key)) or []
        if not isinstance(value, list):
            problems.append(f"router_settings.{key}: must be a list of {{group: [models]}}")
            continue
        lists.extend(value)
    default = router.get("default_fallbacks", litellm.get("default_fallbacks")) or []
    if not isinstance(default, list):
        problems.append("router_settings.default_fallbacks: must be a list of model names")
        default = []
    fallbacks, fallback_problems = merge_fallbacks(lists, default)
    problems.extend(f"router_settings: {p}" for p in fallback_problems)

    return ModelCatalog(
        model_names=frozenset(names),
        alias_map=alias_map,
        group_alias=group_alias,
        deployment_ids=ids,
        provider_models={model: tuple(groups) for model, groups in provider.items()},
        fallbacks=fallbacks,
        forced=(completion_model,) if completion_model else (),
    )


def reach_warnings(catalog: ModelCatalog, rules: Mapping[Role, ModelRule]) -> list[str]:
    """One line per granted name that can make LiteLLM run a model the role is not granted.

    Such requests are refused at run time; the line says how to make the config consistent.
    """
    lines: list[str] = []
    for role, rule in rules.items():
        granted = [n for n in (*catalog.known_names, *rule.entries) if "*" not in n]
        for name in dict.fromkeys(granted):
            if not rule.allows(name):
                continue
            beyond = [m for m in catalog.runs(name) if not rule.allows(m)]
            if beyond:
                lines.append(
                    f"role {role.value}: {name!r} is granted, but LiteLLM may run "
                    f"{', '.join(map(repr, beyond))} for it (aliases or fallbacks), which the role "
                    "is not granted, so requests for it are refused; grant those too or change "
                    "the alias/fallback"
                )
        for model in catalog.forced:
            if not rule.allows(model):
                lines.append(
                    f"role {role.value}: general_settings.completion_model {model!r} runs for "
                    "every completion, and the role is not granted it, so its LLM calls are "
                    "refused"
                )
    return lines


def _mapping(data: Mapping[str, Any], key: str, problems: list[str]) -> Mapping[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        problems.append(f"{key}: must be a mapping")
        return {}
    return value


def _string_map(value: object, where: str, problems: list[str]) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return dict(value)
    problems.append(f"{where}: must map model names to model names")
    return {}
