"""``litellm_jwtauth.custom_validate``: the deployment's own Python check of a caller's claims.

Loaded as LiteLLM loads it (``get_instance_fn`` then ``validate_custom_validate_return_type``):
``module.function``, the module looked for first as a ``.py`` file beside the config file, then
on the import path; the function must be annotated ``-> Literal[True]``. Loading happens when
the config is compiled, so ``check-config`` and start-up name the key when it cannot be done.

Run as LiteLLM runs it (``JWTAuthManager.authenticate_jwt``): on every request, cached tokens
included, with the verified claims (or the userinfo answer). Fail closed where LiteLLM is lax:
only ``True`` itself lets the caller in (LiteLLM lets any truthy value in); ``False`` or any other
value is a 403, an exception a 401 (as LiteLLM answers one). The client's message never quotes the
claims or the exception; the log names the exception's type only.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, get_type_hints

from extauthz.identity.claims import read_claim
from extauthz.identity.fields import ClaimField
from extauthz.model import Deny, Reason

log = logging.getLogger("extauthz.custom_validate")

Validator = Callable[[dict[str, Any]], object]

ISSUER_CLAIM = "_litellm_jwt_issuer"
INTERNAL_PREFIX = "_litellm_"  # LiteLLM strips these from a token and sets them itself


_TOLD: set[tuple[Validator, type]] = set()


class CustomValidateError(ValueError):
    """Why ``custom_validate`` cannot be used; the message says how to fix it."""


def load_validator(dotted: str, config_path: str | None) -> Validator:
    """Import ``module.function`` (beside the config file first, as LiteLLM does)."""
    module_name, _, attr = dotted.strip().rpartition(".")
    if not module_name or not attr:
        raise CustomValidateError(
            f"{dotted!r} is not 'module.function' (e.g. my_checks.validate, a my_checks.py "
            "beside the config file or on PYTHONPATH)"
        )
    if dotted.startswith(("s3://", "gcs://")):
        raise CustomValidateError("loading code from s3:// or gcs:// is not supported")
    try:
        module = _import(module_name, config_path)
        fn = getattr(module, attr)
    except Exception as exc:  # any import-time failure of user code: say which, not its text
        raise CustomValidateError(
            f"{dotted!r} cannot be imported ({type(exc).__name__}); put {module_name}.py beside "
            "the config file or on PYTHONPATH and define the function in it"
        ) from None
    if not callable(fn):
        raise CustomValidateError(f"{dotted!r} is not a function")
    try:
        returns = get_type_hints(fn).get("return")
    except Exception:  # unresolvable annotations
        returns = None
    if returns != Literal[True]:
        raise CustomValidateError(
            f"{dotted!r} must be annotated to return Literal[True] (LiteLLM refuses it "
            "otherwise): def validate(claims: dict) -> Literal[True]"
        )
    return fn  # type: ignore[no-any-return]


def _import(module_name: str, config_path: str | None) -> Any:
    if config_path and Path(config_path).is_file():
        beside = Path(config_path).parent.joinpath(*module_name.split(".")).with_suffix(".py")
        if beside.is_file():
            spec = importlib.util.spec_from_file_location(module_name, beside)
            if spec is None or spec.loader is None:
                raise ImportError(module_name)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    if module_name in sys.modules:
        return sys.modules[module_name]
    return importlib.import_module(module_name)


def claims_for(
    claims: Mapping[str, Any],
    issuer: str | None,
    mapped: tuple[tuple[str, ClaimField], ...] = (),
) -> dict[str, Any]:
    """The claims LiteLLM hands the validator: its own ``_litellm_*`` keys dropped from the
    token, and for an ``issuers`` token the issuer and the values its fields name added
    (``JWTHandler._apply_issuer_claim_mappings``)."""
    out = {k: v for k, v in claims.items() if not k.startswith(INTERNAL_PREFIX)}
    if issuer is not None:
        out[ISSUER_CLAIM] = issuer
        for key, f in mapped:
            value = read_claim(claims, f.name, f.path)
            if value is not None and value != "":
                out[key] = value
    return out


def run_validator(fn: Validator, claims: dict[str, Any]) -> Deny | None:
    """None when ``fn`` returns True; otherwise the deny (see the module docstring)."""
    try:
        verdict = fn(claims)
    except Exception as exc:
        log.warning(
            "custom_validate raised; request refused", extra={"error_type": type(exc).__name__}
        )
        return Deny(
            401,
            Reason.CUSTOM_VALIDATE_REFUSED,
            "the token could not be checked by this deployment's custom validation "
            "(litellm_jwtauth.custom_validate)",
        )
    if verdict is True:
        return None
    if verdict is not False and (fn, type(verdict)) not in _TOLD:
        _TOLD.add((fn, type(verdict)))  # once per function and type, not once per request
        log.warning(
            "custom_validate returned something other than True or False; such callers are "
            "refused (return True to let one in)",
            extra={"returned_type": type(verdict).__name__},
        )
    return Deny(
        403,
        Reason.CUSTOM_VALIDATE_REFUSED,
        "the token was refused by this deployment's custom validation "
        "(litellm_jwtauth.custom_validate)",
    )
