"""The ``extauthz`` command: serve | mint | check-config | explain | token | dev-key.

Exit codes: 0 success (explain: allowed), 1 config problems (explain: denied), 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from extauthz import __version__
from extauthz.errors import ConfigError
from extauthz.grpcserver import CHOICES as GRPC_SERVERS
from extauthz.state.urls import DEFAULT_STATE_URL

if TYPE_CHECKING:
    from extauthz.authorizer import StateView
    from extauthz.config.loader import LoadedPolicy


def _config_default() -> str | None:
    return os.environ.get("EXTAUTHZ_CONFIG")


def _print_problems(exc: ConfigError) -> None:
    print(f"{exc.source}: {len(exc.problems)} problem(s):", file=sys.stderr)
    for problem in exc.problems:
        print(f"  - {problem}", file=sys.stderr)


def cmd_serve(args: argparse.Namespace) -> int:
    from extauthz.config.loader import load_policy_file
    from extauthz.listen import parse_address
    from extauthz.logs import setup_logging
    from extauthz.runtime import DRAIN_DELAY_SECONDS, ServeOptions
    from extauthz.workers import refusal, run_one, serve_workers

    setup_logging(args.log_level)
    options = ServeOptions(
        config=args.config,
        grpc_address=args.grpc_address,
        http_address=args.http_address or None,
        state_url=args.state,
        authz_http_address=args.authz_http_address or None,
        authz_http_path_prefix=args.authz_http_path_prefix,
        drain_delay=DRAIN_DELAY_SECONDS if args.drain_delay is None else args.drain_delay,
        grpc_server=args.grpc_server,
    )
    problems = []
    for flag, address in (
        ("--grpc-address", options.grpc_address),
        ("--http-address", options.http_address),
        ("--authz-http-address", options.authz_http_address),
    ):
        try:
            if address:
                parse_address(address)
        except ValueError:
            problems.append(f"{flag} {address!r} is not HOST:PORT (e.g. 0.0.0.0:9191)")
    if not problems and (why := refusal(options, args.workers)) is not None:
        problems.append(why)
    if problems:
        _print_problems(ConfigError(problems, "command line"))
        return 2
    if args.workers == 1:
        return run_one(options)
    try:  # refuse a bad policy once, here, rather than once per worker
        load_policy_file(options.config, os.environ)
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    return serve_workers(options, args.workers, args.log_level)


def cmd_check_config(args: argparse.Namespace) -> int:
    from extauthz.config.gate import describe_gate
    from extauthz.config.loader import load_policy_file
    from extauthz.policy import rolemap
    from extauthz.redact import redact_url

    try:
        loaded = load_policy_file(args.path, os.environ)
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    p = loaded.policy
    print(f"{args.path}: OK")
    print(
        f"  jwt auth: {'on' if p.enable_jwt_auth else 'off'}; master key: "
        f"{'set' if p.master_key else 'not set'}; non-JWT keys: "
        f"{'passed through' if p.non_jwt_passthrough else 'refused'}"
    )
    if p.enable_jwt_auth:
        keys = loaded.settings.keys
        shown = ", ".join(redact_url(u) for u in keys.urls) or "none besides the issuers below"
        print(f"  signing keys: {shown} (cached {keys.ttl:g}s)")
        rules = p.token_rules
        print(
            f"  audience: {', '.join(sorted(rules.audiences)) or 'not checked'}; issuer: "
            f"{', '.join(sorted(rules.issuers)) or 'not checked'}; leeway {rules.leeway:g}s"
        )
    _print_providers(loaded)
    f = p.fields
    print(
        f"  admin scope: {p.admin_scope}; team claim: {f.team_id.name if f.team_id else 'off'}; "
        f"user claim: {f.user_id.name if f.user_id else 'off'}; user roles claim: "
        f"{f.roles.name if f.roles else 'off'}"
    )
    if f.team_ids or f.team_alias or p.team_id_upsert or p.enforce_team_models:
        print(
            f"  teams: from claim {f.team_ids.name if f.team_ids else '(off)'} (several), "
            f"alias claim {f.team_alias.name if f.team_alias else '(off)'}; "
            f"upsert {'on' if p.team_id_upsert else 'off'}; team-based model access "
            f"{'enforced' if p.enforce_team_models else 'off'} (teams: the --state registry)"
        )
    for role, routes in p.role_routes.items():
        narrowed = p.role_permission_routes.get(role)
        models = p.role_models.get(role)
        print(
            f"  {role.value}: routes {', '.join(routes)}"
            + (f" ∩ {', '.join(narrowed)}" if narrowed else "")
            + (f"; models {', '.join(models.entries) or '(none)'}" if models else "; any model")
        )
    if p.email_domains:
        print(f"  email domains: {', '.join(sorted(p.email_domains))}")
    for line in (*describe_gate(p.gate), *rolemap.describe(p)):
        print(f"  {line}")
    for warning in loaded.warnings:
        print(f"  warning: {warning}")
    return 0


def _print_providers(loaded: LoadedPolicy) -> None:
    """check-config's lines for issuers, custom_validate and the userinfo endpoint."""
    from extauthz.redact import redact_url

    p, keys = loaded.policy, loaded.settings.keys
    urls = dict(keys.issuers)
    for issuer, rules in p.token_rules.providers:
        f = p.issuer_claims[issuer].fields
        claims = ", ".join(
            f"{name} {field.name}"
            for name, field in (
                ("user", f.user_id),
                ("email", f.email),
                ("team", f.team_id),
                ("teams", f.team_ids),
                ("org", f.org_id),
                ("end user", f.end_user_id),
            )
            if field is not None
        )
        print(
            f"  issuer {issuer}: keys {', '.join(redact_url(u) for u in urls[issuer])}; audience "
            f"{', '.join(sorted(rules.audiences)) or 'not checked'}; claims: {claims or 'none'}"
        )
    if p.token_rules.providers:
        print(
            "  other issuers: "
            + ("the signing keys above" if keys.urls else "refused (no global signing keys)")
        )
    if p.custom_validate is not None:
        fn = p.custom_validate
        print(f"  custom_validate: {getattr(fn, '__module__', '?')}.{getattr(fn, '__name__', '?')}")
    if keys.userinfo_endpoint is not None:
        print(
            f"  opaque tokens: resolved at {redact_url(keys.userinfo_endpoint)} "
            f"(answers cached {keys.userinfo_cache_ttl:g}s)"
        )
    if keys.introspection is not None:
        from extauthz.config.overrides import describe_endpoint

        for line in () if p.routing_overrides is None else p.routing_overrides.describe():
            print(f"  {line}")
        if p.enable_oauth2_auth:
            print(f"  {_opaque_tokens(loaded)}")
        endpoint = keys.introspection.endpoint
        print(f"  introspected at {redact_url(endpoint)}: {describe_endpoint(keys.introspection)}")


def _opaque_tokens(loaded: LoadedPolicy) -> str:
    """What ``enable_oauth2_auth`` does, and what becomes of a non-JWT token elsewhere."""
    from extauthz.policy.overrides import OPAQUE_INTROSPECTED

    p = loaded.policy
    elsewhere = [
        "the master key" if p.master_key else "",
        "resolved at the userinfo endpoint" if loaded.settings.keys.userinfo_endpoint else "",
        "passed through" if p.non_jwt_passthrough else "refused (invalid_api_key)",
    ]
    return (
        OPAQUE_INTROSPECTED
        + ("" if p.enable_jwt_auth else " (so is a JWT: JWT auth is off)")
        + (" (the master key is refused there)" if p.master_key else "")
        + "; on other routes a non-JWT token is "
        + ", else ".join(e for e in elsewhere if e)
    )


async def _explain(args: argparse.Namespace) -> int:
    from extauthz.authorizer import Authorizer, explain_request, introspection_route
    from extauthz.config.loader import load_policy_file
    from extauthz.identity.credentials import extract_credential
    from extauthz.identity.jwks import HttpFetcher, JwksSource
    from extauthz.identity.providers import IssuerKeys, unverified_issuer
    from extauthz.identity.tokens import looks_like_jwt
    from extauthz.identity.verifier import TokenVerifier
    from extauthz.model import MASTER_KEY, Allow
    from extauthz.policy import rolemap
    from extauthz.policy.overrides import OPAQUE_INTROSPECTED, OverrideRule
    from extauthz.policy.paths import PathError, check_path
    from extauthz.policy.verdict import render
    from extauthz.redact import redact_url
    from extauthz.runtime import introspector_for, userinfo_client

    loaded = load_policy_file(args.config, os.environ)
    policy = loaded.policy
    key_settings = loaded.settings.keys
    fetcher = HttpFetcher(key_settings.fetch_timeout)
    keys = JwksSource(key_settings.urls, ttl=key_settings.ttl, fetch=fetcher)
    issuer_keys = IssuerKeys(fetcher)
    issuer_keys.sync(key_settings.issuers, key_settings.ttl, key_settings.refetch_interval)
    userinfo = userinfo_client(key_settings)
    introspector = introspector_for(key_settings)
    try:
        if policy.enable_jwt_auth:
            await asyncio.gather(
                keys.refresh("startup") if keys.urls else asyncio.sleep(0),
                issuer_keys.refresh_all(),
            )
        verifier = TokenVerifier(
            keys,
            policy.token_rules,
            cache_size=0,
            issuer_keys=issuer_keys.sources,
            userinfo=userinfo,
        )
        authorizer = Authorizer(
            policy,
            verifier if policy.enable_jwt_auth else None,
            state=await _explain_state(args.state),
            check_timeout=loaded.settings.check_timeout,
        )
        authorizer.introspector = introspector
        extra = dict(h.partition(":")[::2] for h in args.header or [])
        view = explain_request(
            args.token or "", args.method, args.path, (args.body or "").encode(), extra
        )
        view = view._replace(client_address=view.client_address or args.client_address)
        decision = await authorizer.authorize(view)
        timing = None
        if args.repeat > 0:
            start = time.perf_counter()
            for _ in range(args.repeat):
                await authorizer.authorize(view)
            timing = (time.perf_counter() - start) / args.repeat * 1e6
    finally:
        await fetcher.close()
        if userinfo is not None:
            await userinfo.close()
        if introspector is not None:
            await introspector.close()
    verdict = render(decision, policy)
    out: dict[str, object] = {
        "allowed": verdict.allowed,
        "status": verdict.status,
        "reason": verdict.reason.value,
        "role": decision.role.value if decision.role else None,
        "identity": decision.identity._asdict() if decision.identity else None,
    }
    if isinstance(decision, Allow):
        out["set_headers"] = dict(verdict.headers)
        out["remove_headers"] = list(verdict.remove)
    else:
        out["message"] = json.loads(verdict.body)["error"]["message"]
        out["response_headers"] = dict(verdict.headers)
    out["metadata"] = dict(verdict.metadata)
    if decision.identity is not None and decision.identity.kind == "jwt":
        out["team"] = {
            "team_id": decision.identity.team_id,
            "why": decision.team_source if isinstance(decision, Allow) else None,
            "token_teams": list(decision.identity.team_ids),
            "registry": "not read (pass --state URL)"
            if args.state is None
            else redact_url(args.state),  # a postgresql:// URL may carry a password
        }
    token = args.token or ""
    if policy.token_rules.providers and looks_like_jwt(token):
        iss = unverified_issuer(token)
        chosen = iss if isinstance(iss, str) and iss in policy.issuer_claims else None
        out["issuer_chosen"] = chosen or ("global signing keys" if keys.urls else "none (refused)")
    checked = check_path(view.path)
    path = "" if isinstance(checked, PathError) else checked[0]
    # The check's own routing (one code path): the credential as the check reads it.
    credential = extract_credential(view.headers, policy.gate.key_header)
    route = None if credential is None else introspection_route(credential.value, path, policy)
    if policy.routing_overrides is not None:
        override = None
        if route is not None and isinstance(route.why, OverrideRule):
            override = route.why.describe() + (
                ": introspected, not verified as a JWT"
                if route.refused is None
                else f": refused before introspection ({route.refused.reason.value})"
            )
        out["routing_override"] = override
    if policy.enable_oauth2_auth:
        sent = route is not None and route.refused is None and isinstance(route.why, str)
        out["oauth2_introspection"] = OPAQUE_INTROSPECTED if sent else None
    by_key = decision.identity is not None and decision.identity.kind == MASTER_KEY
    out["userinfo_used"] = (
        userinfo is not None
        and bool(token)
        and not looks_like_jwt(token)
        and not by_key
        and route is None
    )
    mappings = rolemap.explain(decision.identity, policy) if decision.identity else {}
    if mappings:
        out["mappings"] = mappings
    if keys.last_error:
        out["key_fetch_error"] = keys.last_error
    issuer_errors = {i: s.last_error for i, s in issuer_keys.sources.items() if s.last_error}
    if issuer_errors:
        out["issuer_key_fetch_errors"] = issuer_errors
    if timing is not None:
        out["microseconds_per_decision"] = round(timing, 1)
    print(json.dumps(out, indent=2, default=sorted))
    return 0 if verdict.allowed else 1


async def _explain_state(url: str | None) -> StateView | None:
    """The state store's snapshot now (teams, blocks), read once; None without ``--state``."""
    if url is None:
        return None
    from extauthz.authorizer import StateView
    from extauthz.state.urls import store_from_url

    store = store_from_url(url)
    try:
        await store.open()
        return StateView(await store.snapshot())
    finally:
        await store.close()


def cmd_explain(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_explain(args))
    except ConfigError as exc:
        _print_problems(exc)
        return 2


def cmd_token(args: argparse.Namespace) -> int:
    from extauthz.devtokens import load_private_key, sign_token

    try:
        claims = json.loads(args.claims)
    except ValueError as exc:
        print(f"--claims is not JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(claims, dict):
        print("--claims must be a JSON object", file=sys.stderr)
        return 2
    try:
        key = load_private_key(args.key)
    except (OSError, ValueError) as exc:
        print(
            f"cannot read --key {args.key}: {exc}; create one with "
            "'extauthz dev-key --key dev-key.pem --jwks jwks.json'",
            file=sys.stderr,
        )
        return 2
    print(sign_token(key, claims, ttl=args.ttl))
    return 0


def cmd_dev_key(args: argparse.Namespace) -> int:
    from extauthz.devtokens import write_dev_key

    write_dev_key(args.key, args.jwks)
    print(
        f"key: {args.key}\njwks: {args.jwks} (use JWT_PUBLIC_KEY_URL=file://"
        f"{os.path.abspath(args.jwks)})"
    )
    return 0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 3600")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="extauthz", description="LiteLLM's JWT/OIDC access policy for Envoy ext_authz."
    )
    parser.add_argument("--version", action="version", version=f"extauthz {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the ext_authz gRPC sidecar")
    serve.add_argument(
        "--config",
        default=_config_default(),
        required=_config_default() is None,
        help="policy YAML (LiteLLM config.yaml); env EXTAUTHZ_CONFIG",
    )
    serve.add_argument("--grpc-address", default="0.0.0.0:9191")
    serve.add_argument(
        "--http-address",
        default="0.0.0.0:9192",
        help="health, metrics and admin API; '' to disable",
    )
    serve.add_argument(
        "--state",
        default=os.environ.get("EXTAUTHZ_STATE_URL", DEFAULT_STATE_URL),
        help="state store: sqlite:///PATH (default sqlite:///extauthz-state.db), "
        "postgresql://USER@HOST:5432/DB, or memory://; env EXTAUTHZ_STATE_URL",
    )
    serve.add_argument(
        "--authz-http-address",
        default=None,
        help="also serve Envoy's HTTP-service ext_authz mode here (e.g. 127.0.0.1:9194); "
        "off unless given",
    )
    serve.add_argument(
        "--authz-http-path-prefix",
        default="/extauthz",
        help="the http_service.path_prefix configured in Envoy (default /extauthz)",
    )
    serve.add_argument(
        "--drain-delay",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="on SIGTERM, keep serving this long with readiness NOT_SERVING before closing the "
        "ports, so health checks route checks elsewhere first (default 3; 0 closes at once)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serve from N processes sharing the ports (SO_REUSEPORT), to use N cores; needs a "
        "shared --state (sqlite or postgresql) and fixed ports (default 1)",
    )
    serve.add_argument(
        "--grpc-server",
        choices=GRPC_SERVERS,
        default=GRPC_SERVERS[0],
        help="the gRPC port's server: grpcio's (default) or pygrpc-native's (HTTP/2 in Rust, "
        "outside the GIL: about twice the checks per core, but it reads a whole message before "
        "its size check, so use it only where nothing but Envoy can reach the port)",
    )
    serve.add_argument(
        "--log-level",
        default=os.environ.get("EXTAUTHZ_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
    )
    serve.set_defaults(func=cmd_serve)

    from extauthz.mint import cli as mint_cli

    mint = sub.add_parser("mint", help="keep upstream credentials fresh on disk for Envoy")
    mint_cli.add_arguments(mint)
    mint.set_defaults(func=mint_cli.run)

    check = sub.add_parser("check-config", help="validate a policy file and summarize it")
    check.add_argument("path")
    check.set_defaults(func=cmd_check_config)

    explain = sub.add_parser("explain", help="decide one request offline and say why")
    explain.add_argument("--config", default=_config_default(), required=_config_default() is None)
    explain.add_argument(
        "--token", help="the bearer token (JWT or key); write --token=VALUE if it starts with '-'"
    )
    explain.add_argument("--path", required=True)
    explain.add_argument("--method", default="POST")
    explain.add_argument("--body", help="request body (JSON)")
    explain.add_argument("--header", action="append", help="extra 'name: value' header")
    explain.add_argument(
        "--client-address",
        default="127.0.0.1",
        help="the client IP Envoy would report (general_settings.allowed_ips)",
    )
    explain.add_argument(
        "--state",
        help="read teams and blocks from this state store (the sidecar's --state URL), so the "
        "team the request runs as is chosen as the sidecar would",
    )
    explain.add_argument(
        "--repeat",
        type=int,
        default=0,
        help="decide N more times and report microseconds per decision",
    )
    explain.set_defaults(func=cmd_explain)

    token = sub.add_parser("token", help="sign a development token with a local key")
    token.add_argument("--key", required=True, help="PEM private key (see dev-key)")
    token.add_argument("--claims", required=True, help="JSON object of claims")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until exp")
    token.set_defaults(func=cmd_token)

    devkey = sub.add_parser("dev-key", help="create a local signing key and its JWKS")
    devkey.add_argument("--key", required=True)
    devkey.add_argument("--jwks", required=True)
    devkey.set_defaults(func=cmd_dev_key)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
