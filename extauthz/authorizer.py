"""The authorization pipeline every adapter calls: path → credential → identity → decision.

``Authorizer.authorize`` never raises: an internal failure is a 500 deny and one log line
with the exception's type (never its text, which could quote a token). Fail closed.

The gRPC server calls it from its threads in two halves: ``decide_now`` (a cached or freshly
verified token, the memoised path: no event loop, safe from any thread) and, only for the rare
request that must wait (a key refetch for an unknown ``kid``, a large body for the worker
process), ``finish`` on the event loop. Memos are swapped as whole references, never mutated
under a reader's feet in a way that could pair one policy with another's answer.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from extauthz.bodyreader import BodyReader
from extauthz.identity.credentials import Credential, extract_credential, unsendable
from extauthz.identity.customvalidate import claims_for, run_validator
from extauthz.identity.tokens import TokenFailure, UnknownKid, looks_like_jwt
from extauthz.identity.verifier import TokenVerifier, Verified
from extauthz.model import (
    CLIENT_ADDRESS_HEADER,
    JWT,
    MASTER_KEY,
    PASSTHROUGH,
    Decision,
    Deny,
    Identity,
    Reason,
    RequestView,
    Role,
    internal_error,
)
from extauthz.policy.compiled import Policy
from extauthz.policy.decide import Admission, admit, judge_body, named
from extauthz.policy.gate import check_gate
from extauthz.policy.overrides import ClaimsOf, OverrideRule, introspected_by, unverified_claims
from extauthz.policy.paths import PathError, check_path
from extauthz.state.protocol import StateSnapshot

if TYPE_CHECKING:
    from extauthz.identity.introspection import Introspector

log = logging.getLogger("extauthz.authorizer")

MEMO_SIZE = 8192
"""Most entries each memo holds before it starts over."""
MEMO_PATH_CHARS = 256
"""Longest request target a memo keeps. Paths are the caller's choice (before any credential is
checked), so memos hold only short ones that passed the path check: at most MEMO_SIZE x this
many characters per memo, whatever a caller sends. Longer and refused paths are checked anew
on every request (for the long ones, the regexes of ``check_path`` are still linear)."""


def explain_request(
    token: str, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
) -> RequestView:
    """The request ``explain`` imagines (CLI and admin API): the token as a Bearer credential
    (it wins over any ``authorization`` in ``headers``), a body as JSON unless typed otherwise,
    the client address from ``x-extauthz-client-address`` (as HTTP mode reads it)."""
    request_headers = {k.strip().lower(): v.strip() for k, v in (headers or {}).items()}
    if token:
        request_headers["authorization"] = f"Bearer {token}"
    if body and "content-type" not in request_headers:
        request_headers["content-type"] = "application/json"
    return RequestView(
        method=(method or "POST").upper(),
        path=path,
        headers=request_headers,
        body=body,
        request_id="explain",
        client_address=request_headers.get(CLIENT_ADDRESS_HEADER, ""),
    )


class Introspection(NamedTuple):
    """A token a check routes to OAuth2 introspection (``introspection_route``)."""

    why: OverrideRule | str  # the routing_overrides rule, or OPAQUE_INTROSPECTED
    refused: Deny | None = None  # never sent: the master key, a token no provider issued


def introspection_route(
    token: str, path: str, policy: Policy, claims_of: ClaimsOf | None = None
) -> Introspection | None:
    """Whether ``token`` on ``path`` (decoded) goes to introspection (``routing_overrides``,
    ``enable_oauth2_auth``), and whether it is refused before it is sent. None: the token goes
    on as usual (JWT, master key, userinfo, passthrough). Checks and ``extauthz explain`` both
    ask this, so explain cannot tell another story than the check. ``claims_of``: as
    ``RoutingOverrides.match`` takes it (a cached token's parsed claims)."""
    why = introspected_by(
        token,
        path,
        policy.enable_jwt_auth,
        policy.enable_oauth2_auth,
        policy.routing_overrides,
        claims_of,
    )
    if why is None:
        return None
    if _is_master(token, policy.master_key):
        # LiteLLM introspects it too, and the provider does not know it: the same refusal,
        # without handing the secret to the provider.
        return Introspection(why, _MASTER_INTROSPECTED)
    refused = unsendable(token, policy.token_rules.max_token_bytes, "the provider")
    return Introspection(why, None if refused is None else _token_deny(refused))


class _Unverified(NamedTuple):
    """A request whose token must be verified (maybe after a key fetch) before deciding."""

    credential: Credential
    path: str
    query: str
    policy: Policy
    introspect: bool = False  # OAuth2 introspection (routing_overrides, enable_oauth2_auth)


class _LargeBody(NamedTuple):
    """An admitted request whose body is read in the worker process before judging."""

    admission: Admission
    path: str
    query: str
    policy: Policy  # the one it was admitted under (a reload may land while the worker reads)


Pending = _Unverified | _LargeBody
"""What ``decide_now`` hands to ``finish`` when the decision must wait for I/O."""


class StateView:
    """The snapshot decisions read; replaced whole by whoever watches the store."""

    def __init__(self, snapshot: StateSnapshot | None = None) -> None:
        self.current = snapshot or StateSnapshot()


class Authorizer:
    """Holds the current policy, verifier and state view; shared by all adapters."""

    def __init__(
        self,
        policy: Policy,
        verifier: TokenVerifier | None,
        state: StateView | None = None,
        body_reader: BodyReader | None = None,
        on_identity: Callable[[Identity, Role | None, Policy], None] | None = None,
        check_timeout: float = 0.8,
    ) -> None:
        self.policy = policy
        # How long a check may wait for keys or the body worker (ServeSettings.check_timeout).
        self.check_timeout = check_timeout
        self.verifier = verifier
        self.state = state or StateView()
        # Called with every caller authenticated by a verified JWT (the user recorder), as
        # ``admit`` named it and with the role it acts as.
        self.on_identity = on_identity
        # Large bodies are parsed off the event loop (serve); None: inline (explain, tests).
        self.body_reader = body_reader
        # routing_overrides, enable_oauth2_auth: where tokens are introspected (runtime sets it).
        self.introspector: Introspector | None = None
        # Memos of pure steps (bounded in entries and, by MEMO_PATH_CHARS, in bytes; cleared
        # when full). A request for a path or a (caller, path) seen before skips the path check
        # and everything but its body.
        self._paths: dict[str, tuple[str, str]] = {}
        # (policy, state, memo) as one reference: a thread still deciding under the old policy
        # writes into the old memo, which nobody reads any more.
        self._admissions: tuple[
            Policy | None, StateSnapshot | None, dict[tuple[Identity, str], Admission | Deny]
        ] = (None, None, {})

    def set_policy(self, policy: Policy, check_timeout: float | None = None) -> None:
        """Swap in a reloaded policy (one attribute write: requests see old or new, never a mix)."""
        if self.verifier is not None:
            self.verifier.set_rules(policy.token_rules)
        if check_timeout is not None:
            self.check_timeout = check_timeout
        self.policy = policy

    async def authorize(self, request: RequestView) -> Decision:
        """Decide one request. Never raises."""
        step = self.decide_now(request)
        if isinstance(step, _Unverified | _LargeBody):
            return await self.finish(request, step)
        return step

    def decide_now(self, request: RequestView) -> Decision | Pending:
        """The decision, or what must be awaited (by ``finish``) to reach it. Any thread;
        never raises."""
        try:
            return self._decide_now(request)
        except Exception as exc:
            return _internal(request, exc)

    async def finish(self, request: RequestView, step: Pending) -> Decision:
        """The rest of a ``decide_now`` that had to wait. On the event loop; never raises.

        All its waits share one deadline, ``check_timeout`` from here: a key fetch or an
        introspection followed by a large body's read must not take twice that (the server
        thread stops waiting soon after it and answers a 500). Each wait gets what is left and,
        when that runs out, answers its own timeout deny."""
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.check_timeout
            if isinstance(step, _Unverified):
                left = self.check_timeout  # the first wait: the whole budget
                identity = await (
                    self._introspect(step.credential.value, left)
                    if step.introspect
                    else self._verify(step.credential.value, step.policy, left)
                )
                if isinstance(identity, Deny):
                    return identity
                decided = self._decide(request, step.path, step.query, identity, step.policy)
                if not isinstance(decided, _LargeBody):
                    return decided
                step = decided
            return await self._judge_large(request, step, deadline - loop.time())
        except Exception as exc:
            return _internal(request, exc)

    def _decide_now(self, request: RequestView) -> Decision | _Unverified | _LargeBody:
        """The whole decision when nothing needs waiting for (a cached token, a key, a refusal);
        otherwise what is known so far. Warm requests never leave this function."""
        policy = self.policy
        raw = request.path
        remembered = self._paths.get(raw)
        if remembered is None:
            checked = check_path(raw)
            if isinstance(checked, PathError):
                return Deny(400, Reason.BAD_PATH, checked.message)
            if len(raw) <= MEMO_PATH_CHARS:
                if len(self._paths) >= MEMO_SIZE:
                    self._paths.clear()
                self._paths[raw] = checked
            remembered = checked
        path, query = remembered
        gate = policy.gate
        if gate.before_credential:  # allowed_ips, allowed_routes, public_routes
            gated = check_gate(request, path, gate)
            if gated is not None:
                return gated
        credential = extract_credential(request.headers, gate.key_header)
        if credential is None:
            return Deny(
                401,
                Reason.MISSING_CREDENTIAL,
                f"no credential: send '{gate.key_header or 'Authorization'}: Bearer <token>'",
            )
        if policy.routing_overrides is not None or policy.enable_oauth2_auth:
            routed = self._oauth2_now(credential, path, query, policy)
            if routed is not None:  # introspected, not verified as a JWT nor taken as a key
                if isinstance(routed, _Unverified | Deny):
                    return routed
                return self._decide(request, path, query, routed, policy)

        identity = self.identify_now(credential, policy)
        if identity is None:  # a JWT not in the cache: verify it here unless keys must be fetched
            verifier = self.verifier
            assert verifier is not None  # identify_now answers itself without one
            # Without a userinfo endpoint, only a JWT gets here: no second shape test (a pass
            # over the token). Should a reload just have removed the endpoint, ``verify_now``
            # refuses an opaque token as ``verify`` would.
            if verifier.userinfo is not None and not looks_like_jwt(credential.value):
                return _Unverified(credential, path, query, policy)  # userinfo, on the loop
            verified = verifier.verify_now(credential.value)
            if isinstance(verified, UnknownKid):
                return _Unverified(credential, path, query, policy)
            identity = (
                _token_deny(verified)
                if isinstance(verified, TokenFailure)
                else self._identity_of(verified, policy)
            )
        if isinstance(identity, Deny):
            return identity
        return self._decide(request, path, query, identity, policy)

    def _decide(
        self, request: RequestView, path: str, query: str, identity: Identity, policy: Policy
    ) -> Decision | _LargeBody:
        admitted = self._admit(path, identity, policy)
        on_identity = self.on_identity
        if on_identity is not None and identity.kind == JWT:  # a verified token's caller
            if isinstance(admitted, Admission):  # inline: every warm check passes here
                on_identity(admitted.identity, admitted.role, policy)
            else:
                self._note_refused(identity, admitted, policy)
        if isinstance(admitted, Deny):
            return admitted
        reader = self.body_reader
        if (
            reader is not None
            and admitted.read_body
            and not request.body_cut  # a cut body is not parsed
            and reader.wants(len(request.body))
        ):
            return _LargeBody(admitted, path, query, policy)
        return judge_body(admitted, request, path, query, None, self.state.current)

    async def _judge_large(self, request: RequestView, step: _LargeBody, left: float) -> Decision:
        """``judge_body`` with the body's models read by the worker process within ``left``
        seconds (none left: the same 503 as a read that did not finish, without starting it)."""
        assert self.body_reader is not None  # only _decide makes a _LargeBody, with a reader
        admission = step.admission
        read = (
            None
            if left <= 0
            else await self.body_reader.read(
                left,
                step.path,
                step.query,
                request.method,
                request.headers.get("content-type"),
                request.body,
                request.headers.get("x-litellm-model"),
            )
        )
        if read is None:
            return Deny(
                503,
                Reason.BUSY,
                "the authorization service could not read this large request body in time "
                "(other large bodies are queued); retry shortly",
                admission.identity,
                admission.role,
            )
        return judge_body(admission, request, step.path, step.query, read, self.state.current)

    def _note_refused(self, identity: Identity, admitted: Deny, policy: Policy) -> None:
        """``on_identity`` for a caller ``admit`` refused, with the caller and role it named
        (an admitted one is noted inline in ``_decide``)."""
        assert self.on_identity is not None
        if admitted.identity is None or admitted.reason is Reason.MALFORMED_TOKEN:
            # Refused before admit named the caller (a role_problem): name it here (rare).
            self.on_identity(*named(identity, policy), policy)
        else:
            self.on_identity(admitted.identity, admitted.role, policy)

    def _admit(self, path: str, identity: Identity, policy: Policy) -> Admission | Deny:
        """``admit``, remembered per (caller, path) while the policy and state snapshot stand."""
        state = self.state.current
        memo_policy, memo_state, memo = self._admissions
        if policy is not memo_policy or state is not memo_state:
            memo = {}
            self._admissions = (policy, state, memo)
        if len(path) > MEMO_PATH_CHARS:
            return admit(path, identity, policy, state)
        key = (identity, path)
        admitted = memo.get(key)
        if admitted is None:
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            admitted = memo[key] = admit(path, identity, policy, state)
        return admitted

    async def authenticate(self, credential: Credential, policy: Policy) -> Identity | Deny:
        """Who presented this credential: master key, verified JWT, or a passthrough key."""
        known = self.identify_now(credential, policy)
        if known is None:
            known = await self._verify(credential.value, policy, self.check_timeout)
        if self.on_identity is not None and isinstance(known, Identity) and known.kind == JWT:
            self.on_identity(*named(known, policy), policy)  # no admission here: name it
        return known

    async def _verify(self, token: str, policy: Policy, wait: float) -> Identity | Deny:
        """A JWT ``identify_now`` found no cached verdict for (so a verifier exists)."""
        assert self.verifier is not None  # identify_now answers itself without one
        result = await self.verifier.verify(token, wait=wait)
        if isinstance(result, TokenFailure):
            return _token_deny(result)
        return self._identity_of(result, policy)

    def _oauth2_now(
        self, credential: Credential, path: str, query: str, policy: Policy
    ) -> Identity | Deny | _Unverified | None:
        """A token LiteLLM sends to introspection (a ``routing_overrides`` JWT; with
        ``enable_oauth2_auth``, a non-JWT token): its cached caller, a refusal, or the
        introspection to wait for. None: the token goes on as usual. Only called when
        ``routing_overrides`` or ``enable_oauth2_auth`` is set (most policies: neither)."""
        # A custom_validate gets the cached claims' lists and could change them: read anew.
        claims_of = self._claims if policy.custom_validate is None else None
        route = introspection_route(credential.value, path, policy, claims_of)
        if route is None:
            return None
        if route.refused is not None:
            return route.refused
        if self.introspector is None:
            return _NOT_INTROSPECTING
        hit = self.introspector.cached(credential.value)
        return hit if hit is not None else _Unverified(credential, path, query, policy, True)

    def _claims(self, token: str) -> dict[str, Any] | None:
        """``unverified_claims`` of a JWT a ``routing_overrides`` rule may match. A token in the
        cache passed ``read_header`` and its claims are that same payload, parsed: a cached
        token skips two base64 decodes and JSON parses per request."""
        verifier = self.verifier
        known = None if verifier is None else verifier.cached(token)
        return unverified_claims(token) if known is None else known.claims

    async def _introspect(self, token: str, wait: float) -> Identity | Deny:
        """The caller the introspection endpoint names (no custom_validate: LiteLLM's OAuth2
        path runs none)."""
        if self.introspector is None:  # a reload removed it while this request waited
            return _NOT_INTROSPECTING
        result = await self.introspector.resolve(token, wait)
        return _token_deny(result) if isinstance(result, TokenFailure) else result

    def _identity_of(self, verified: Verified, policy: Policy) -> Identity | Deny:
        issuer = None if verified.issuer is None else policy.issuer_claims.get(verified.issuer)
        identity = verified.identity_under(policy if issuer is None else issuer)
        if policy.custom_validate is not None and isinstance(identity, Identity):
            # LiteLLM runs it on every request (it caches no verdict), so do we.
            shown = claims_for(
                verified.claims, verified.issuer, () if issuer is None else issuer.mapped
            )
            refused = run_validator(policy.custom_validate, shown)
            if refused is not None:
                return refused
        return identity

    def identify_now(self, credential: Credential, policy: Policy) -> Identity | Deny | None:
        """``authenticate``'s answer when it needs no waiting; None: a JWT to verify first."""
        token = credential.value
        if _is_master(token, policy.master_key):
            return Identity(kind=MASTER_KEY)
        if policy.enable_jwt_auth:
            verifier = self.verifier
            # Only verified JWTs are cached: a hit needs no shape test (the warm path).
            verified = None if verifier is None else verifier.cached(token)
            if verified is not None:
                return self._identity_of(verified, policy)
            if looks_like_jwt(token):
                if verifier is None:
                    return Deny(503, Reason.KEYS_UNAVAILABLE, "JWT verification is not configured")
                return None
            if verifier is not None and verifier.userinfo is not None:
                return None  # an opaque token for the userinfo endpoint
        if policy.non_jwt_passthrough and not looks_like_jwt(token):
            return Identity(kind=PASSTHROUGH)
        return Deny(
            401,
            Reason.INVALID_API_KEY,
            "the credential is neither a valid JWT nor the master key"
            + (
                ""
                if policy.enable_jwt_auth
                else " (JWT auth is off: general_settings.enable_jwt_auth)"
            )
            + (
                "; OAuth2 tokens (enable_oauth2_auth) are accepted on LLM API, info and /lens "
                "routes only"
                if policy.enable_oauth2_auth
                else ""
            ),
        )


def _is_master(token: str, master: str | None) -> bool:
    return (
        master is not None
        and len(token) == len(master)  # compare_digest reveals the length anyway
        and hmac.compare_digest(
            token.encode("utf-8", "surrogateescape"), master.encode("utf-8", "surrogateescape")
        )
    )


_MASTER_INTROSPECTED = Deny(
    401,
    Reason.INVALID_API_KEY,
    "the master key is not accepted on LLM API, info and /lens routes while "
    "general_settings.enable_oauth2_auth is true (LiteLLM introspects every non-JWT "
    "token there); send a token from the OAuth2 provider",
)
_NOT_INTROSPECTING = Deny(
    503,
    Reason.INTROSPECTION_UNAVAILABLE,
    "OAuth2 token introspection is not running; retry shortly",
)
# The provider could not answer: the token may be fine, retry (503); any other failure is a 401.
_UNAVAILABLE = (
    Reason.KEYS_UNAVAILABLE,
    Reason.USERINFO_UNAVAILABLE,
    Reason.INTROSPECTION_UNAVAILABLE,
)


def _token_deny(failure: TokenFailure) -> Deny:
    status = 503 if failure.reason in _UNAVAILABLE else 401
    return Deny(status, failure.reason, failure.message)


def _internal(request: RequestView, exc: Exception) -> Deny:
    log.error(
        "internal error while deciding; request refused",
        extra={"request_id": request.request_id, "error_type": type(exc).__name__},
    )
    return internal_error(request.request_id)
