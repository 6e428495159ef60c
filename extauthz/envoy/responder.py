"""Decide, encode, count and log one check: the step both Envoy adapters share.

The adapters differ only in how a ``Verdict`` becomes bytes on their wire (a CheckResponse, or an
HTTP response). Allow answers depend only on (decision, policy), so they are encoded once and
reused: for a warm caller, encoding is otherwise most of the per-request cost.

Two policy switches act here and nowhere else, so both adapters behave alike: ``shadow_mode``
(a deny is counted and logged as ``would_deny`` and answered as an allow, see ``shadow``) and
``metadata_on_deny`` (false: denials carry no dynamic metadata).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from extauthz import metrics
from extauthz.logs import log_decision
from extauthz.model import Allow, Decision, Deny, Reason, RequestView, Verdict, internal_error
from extauthz.policy.compiled import Policy
from extauthz.policy.verdict import credential_headers, render
from extauthz.threads import wait

# Envoy's mark on a check whose body it cut at with_request_body.max_request_bytes (both modes).
PARTIAL_BODY_HEADER = "x-envoy-auth-partial-body"
log = logging.getLogger("extauthz.responder")
R = TypeVar("R")
S = TypeVar("S")  # what an authorizer's decide_now hands to its finish
_ALLOW_LABELS = ("allow", Reason.ALLOWED.value, "200")
_DECIDED = (Allow, Deny)  # a tuple: ``Allow | Deny`` would build a union on every call
# How much longer than the check deadline a server thread waits for the event loop's half of a
# check (the loop's own waits are bounded by the deadline; this only catches a stuck loop).
LOOP_MARGIN_SECONDS = 1.0


def shadow(decision: Deny, policy: Policy) -> Verdict:
    """A deny as shadow mode answers it: allowed, with what a real allow would strip.

    A verified caller (a 403) is forwarded as an allow of the same identity would be: its
    identity headers set, unknown ones and credential headers removed. A caller without a
    verified identity (a 401, a bad path) gets every identity header removed, so a client-sent
    ``x-auth-*`` never passes, and its credential headers removed as on any allow.
    Metadata: ``decision: would_deny``, the ``reason``, and the verified identity if any.
    """
    if decision.identity is not None:
        allowed = render(Allow(decision.identity, decision.role), policy)
        headers, remove, metadata = allowed.headers, allowed.remove, dict(allowed.metadata)
    else:
        headers, remove, metadata = (), policy.headers.all(), {}
        if policy.remove_credential_headers:
            remove += credential_headers(policy)
    metadata.update(decision="would_deny", reason=decision.reason.value)
    return Verdict(True, 200, decision.reason, headers, remove, metadata)


class AuthorizerLike(Protocol):
    """What a responder needs of the authorizer (tests pass fakes)."""

    @property
    def policy(self) -> Policy: ...

    async def authorize(self, request: RequestView) -> Decision: ...


class SplitAuthorizerLike(AuthorizerLike, Protocol[S]):
    """An authorizer that can decide on any thread and hand only waiting to the event loop."""

    @property
    def check_timeout(self) -> float: ...

    def decide_now(self, request: RequestView) -> Decision | S: ...

    async def finish(self, request: RequestView, step: S) -> Decision: ...


class Responder(Generic[R]):
    """Turns a request view into an encoded answer. Never raises: failures give ``internal``."""

    def __init__(
        self,
        authorizer: AuthorizerLike,
        encode: Callable[[Verdict], R],
        internal: R,
        cache_size: int = 8192,
    ) -> None:
        self.authorizer = authorizer
        self._encode = encode
        self._internal = internal
        # (policy, cache) as one reference, so threads answering under an old policy write
        # into the old cache only.
        self._allow_cache: tuple[Policy | None, dict[Allow, R]] = (None, {})
        self._cache_size = cache_size

    def _allow(self, decision: Allow, policy: Policy) -> R:
        cache_policy, cache = self._allow_cache
        if policy is not cache_policy:  # a reload may rename headers: start over
            cache = {}
            self._allow_cache = (policy, cache)
        response = cache.get(decision)
        if response is None:
            if len(cache) >= self._cache_size:
                cache.clear()
            response = self._encode(render(decision, policy))
            cache[decision] = response
        return response

    async def respond(self, view: RequestView) -> R:
        """Decide ``view`` and encode the answer, with metrics and a decision log line."""
        start = time.perf_counter()
        try:
            policy = self.authorizer.policy
            decision = await self.authorizer.authorize(view)
        except Exception as exc:  # last guard: fail closed with a fixed answer
            log.error("cannot decide", extra={"error_type": type(exc).__name__})
            return self._internal
        return self._answer(view, policy, decision, start)

    def respond_blocking(
        self,
        view: RequestView,
        authorizer: SplitAuthorizerLike[S],
        loop: asyncio.AbstractEventLoop | None,
    ) -> R:
        """``respond`` for a server thread: the decision is made on this thread; only a check
        that must wait (key refetch, large body) runs its rest on ``loop`` and is waited for."""
        start = time.perf_counter()
        try:
            policy = authorizer.policy
            decision = authorizer.decide_now(view)
            if not isinstance(decision, _DECIDED):
                if loop is None:
                    raise RuntimeError("this check must wait but no event loop was given")
                future = asyncio.run_coroutine_threadsafe(authorizer.finish(view, decision), loop)
                try:
                    decision = wait(future, authorizer.check_timeout + LOOP_MARGIN_SECONDS)
                except concurrent.futures.TimeoutError:
                    future.cancel()
                    log.error("the event loop did not finish a check in time; refused")
                    decision = internal_error(view.request_id)
        except Exception as exc:  # last guard: fail closed with a fixed answer
            log.error("cannot decide", extra={"error_type": type(exc).__name__})
            return self._internal
        return self._answer(view, policy, decision, start)

    def _answer(self, view: RequestView, policy: Policy, decision: Decision, start: float) -> R:
        """Encode, count and log one decision. Never raises."""
        try:
            if isinstance(decision, Allow):
                response = self._allow(decision, policy)
                status = 200
                labels = (
                    _ALLOW_LABELS
                    if decision.reason is Reason.ALLOWED
                    else ("allow", decision.reason.value, "200")  # public_route
                )
            else:
                status = decision.status
                if policy.shadow_mode:
                    outcome, verdict = "would_deny", shadow(decision, policy)
                else:
                    outcome, verdict = "deny", render(decision, policy)
                    if not policy.metadata_on_deny:
                        verdict = verdict._replace(metadata={})
                response = self._encode(verdict)
                labels = (outcome, decision.reason.value, str(status))
        except Exception as exc:  # last guard: fail closed with a fixed answer
            log.error("cannot render a decision", extra={"error_type": type(exc).__name__})
            return self._internal
        elapsed = time.perf_counter() - start
        metrics.CHECKS.record(labels, elapsed)
        log_decision(view, decision, status, elapsed, labels[0])
        return response
