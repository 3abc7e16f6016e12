# -*- test-case-name: tests.trust.test_context -*-
"""
Who made one call and what they presented: the value the protocol edge
hands the managers in place of the raw credential list.

The edge builds a L{CallContext} per call from the TLS peer's verified
certificate and the call's C{credentials} argument, with the role's
authorizer (and, at a slice manager, its forwarding policy). A manager
asks it for a L{Grant} once it knows what the call is about
(L{CallContext.authorize}), or, at a slice manager, for what to forward
to its aggregates (L{CallContext.forwarding_for_slice},
L{CallContext.forwarding_for_resources}); it never reads the credentials
itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred

from geniam.errors import GeniCode, GeniError
from geniam.interfaces import IAuthorizer, IForwardingPolicy
from geniam.trust.forwarding import Forwarding
from geniam.trust.gid import GID
from geniam.trust.verdicts import Grant

MakeContext = Callable[[Any, Sequence[Any]], "CallContext"]
"""C{make(peer, credentials) -> CallContext}: what the XML-RPC edge calls for each call."""


@dataclass(frozen=True, eq=False)
class CallContext:
    """
    One call's caller, what it presented, and who decides what it may do.

    @ivar peer: the TLS client's verified L{GID} (the caller the SM's
        replay and loop checks key on).
    @ivar credentials: the call's C{credentials} argument as received
        (empty for methods taking none).
    @ivar authorizer: decides what the caller may do.
    @ivar forwarding: at a slice manager, decides what it may forward.
    """

    peer: GID
    credentials: Sequence[Any]
    authorizer: IAuthorizer
    forwarding: IForwardingPolicy | None = None

    def authorize(self, method: str, target: str | None = None, options: Mapping[str, Any] | None = None) -> Deferred[Grant]:
        """
        Decide whether the caller may call C{method} on C{target}.

        @param target: the slice URN the call is about, if any.
        @param options: the call's options (C{geni_speaking_for} is read).
        @return: a Deferred firing with a L{Grant} or failing with the
            authorizer's L{GeniError}.
        """
        d: Deferred[Grant] = self.authorizer.authorize(self.peer, self.credentials, method, target, options)
        return d

    def forwarding_for_resources(self, options: Mapping[str, Any]) -> Deferred[Forwarding]:
        """
        At a slice manager: authorise a call about no slice (ListResources)
        and say what to send its aggregates (L{IForwardingPolicy.for_resources}).
        """
        return self._ask_policy(lambda policy: policy.for_resources(self.peer, self.credentials, options))

    def forwarding_for_slice(self, method: str, slice_urn: str | None, options: Mapping[str, Any]) -> Deferred[Forwarding]:
        """
        At a slice manager: authorise a call about a slice (C{None}: the
        slice of the slivers named, taken from the credentials) and say
        what to send its aggregates (L{IForwardingPolicy.for_slice}).
        """
        return self._ask_policy(lambda policy: policy.for_slice(self.peer, self.credentials, method, slice_urn, options))

    def _ask_policy(self, ask: Callable[[IForwardingPolicy], Any]) -> Deferred[Forwarding]:
        def asked() -> Any:
            if self.forwarding is None:
                raise GeniError(GeniCode.SERVERERROR, "this server forwards no calls")
            return ask(self.forwarding)

        d: Deferred[Forwarding] = maybeDeferred(asked)
        return d


def context_maker(authorizer: IAuthorizer, forwarding: IForwardingPolicy | None = None) -> MakeContext:
    """
    The per-call context factory of a role: C{make(peer, credentials)}
    gives a L{CallContext} with C{authorizer} (and C{forwarding}).
    """
    return partial(CallContext, authorizer=authorizer, forwarding=forwarding)
