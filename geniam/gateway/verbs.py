# -*- test-case-name: tests.protocols.test_pb,tests.agent.test_inprocess -*-
"""
The gateway's verbs, written once: each verb's name on the aggregate
manager's interface (L{geniam.interfaces.IGatewayAgent}), on the wire
(the TBAM agent's Perspective Broker methods) and on the agent's back end
(L{geniam.interfaces.IGatewayBackend}), with the check of its argument.

L{apply_verb} is what happens where a verb reaches a gateway: its argument
is validated (the trust boundary: the agent's end of the PB link, or the
in-process gateway) and the back end applies it. L{GatewayCalls} is the
aggregate manager's side: every L{IGatewayAgent} method as one call of
C{_verb}, which the PB client and the in-process gateway each provide.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred

from geniam.errors import GeniCode, GeniError
from geniam.gateway.config import GatewayConfig
from geniam.gatewayconfig import ControllerPolicy, canonical_controller, validate_ssh_keys, validate_vlan_map

Check = Callable[[object, "ControllerPolicy | None"], Any]
"""Validates a verb's argument (with the controller policy, if any) and returns its normal form."""


def _keys(value: object, policy: ControllerPolicy | None) -> tuple[str, ...]:
    return validate_ssh_keys(value)


def _controller(value: object, policy: ControllerPolicy | None) -> str:
    return policy.check(value) if policy is not None else canonical_controller(value)


def _vlans(value: object, policy: ControllerPolicy | None) -> dict[str, str]:
    return validate_vlan_map(value)


def _count(what: str) -> Callable[[Any], str]:
    return lambda value: f"{len(value)} {what}"


@dataclass(frozen=True)
class Verb:
    """
    One verb of the gateway.

    @ivar name: the method of L{geniam.interfaces.IGatewayAgent}.
    @ivar remote: the agent's PB method.
    @ivar backend: the method of L{geniam.interfaces.IGatewayBackend}.
    @ivar check: validates the one argument; None for verbs without one.
    @ivar describe: the validated argument in a few words, for the log.
    @ivar changes: False for the queries, which change nothing.
    """

    name: str
    remote: str
    backend: str
    check: Check | None = None
    describe: Callable[[Any], str] = str
    changes: bool = True

    @property
    def arity(self) -> int:
        """How many arguments the verb takes (0 or 1)."""
        return 0 if self.check is None else 1

    def arity_error(self) -> str:
        """The refusal of a call with the wrong arguments."""
        return f"{self.remote} takes {self.arity} positional argument{'s' if self.arity != 1 else ''}"

    def check_arity(self, args: Sequence[object]) -> None:
        """
        @raise GeniError: BADARGS unless C{args} has L{arity} arguments.
        """
        if len(args) != self.arity:
            raise GeniError(GeniCode.BADARGS, self.arity_error())

    def validated(self, args: Sequence[object], policy: ControllerPolicy | None = None) -> tuple[Any, ...]:
        """
        Return C{args} validated and normalised.

        @raise GeniError: BADARGS if an argument is malformed, REFUSED if the policy forbids the controller.
        """
        self.check_arity(args)
        return () if self.check is None else (self.check(args[0], policy),)


GET_SWITCHES = Verb("get_switches", "getSws", "switches", changes=False)
GET_LINKS = Verb("get_links", "getLinks", "links", changes=False)
SET_USER_AUTH = Verb("set_user_auth", "setUserAuth", "set_user_auth", _keys, _count("keys"))
REM_USER_AUTH = Verb("rem_user_auth", "remUserAuth", "rem_user_auth", _keys, _count("keys"))
SET_TCP_PROXY = Verb("set_tcp_proxy", "setTCPProxy", "set_tcp_proxy", _controller)
REM_TCP_PROXY = Verb("rem_tcp_proxy", "remTCPProxy", "rem_tcp_proxy")
SET_OVS = Verb("set_ovs", "setOvs", "set_ovs", _vlans, _count("mappings"))
REM_OVS = Verb("rem_ovs", "remOvs", "rem_ovs")
RESET = Verb("reset", "reset", "reset")
STATE = Verb("state", "state", "state", changes=False)

VERBS: tuple[Verb, ...] = (
    GET_SWITCHES, GET_LINKS, SET_USER_AUTH, REM_USER_AUTH, SET_TCP_PROXY, REM_TCP_PROXY, SET_OVS, REM_OVS, RESET, STATE,
)
"""Every verb of the gateway."""

BY_REMOTE: Mapping[str, Verb] = {verb.remote: verb for verb in VERBS}
"""The verbs by their PB method name."""


def plain_answer(answer: object) -> Any:
    """A back end's answer as plain data: a configuration in its wire form, a list as a list."""
    if isinstance(answer, GatewayConfig):
        return answer.to_wire()
    if isinstance(answer, (list, tuple)):
        return list(answer)
    return answer


async def apply_verb(backend: Any, verb: Verb, args: Sequence[object], policy: ControllerPolicy | None = None) -> tuple[Any, tuple[Any, ...]]:
    """
    Validate C{args} and have C{backend} (an L{geniam.interfaces.IGatewayBackend}) apply C{verb}.

    @return: the answer as plain data, and the validated arguments.
    @raise GeniError: as L{Verb.validated} and the back end raise.
    """
    valid = verb.validated(args, policy)
    answer = await getattr(backend, verb.backend)(*valid)
    return plain_answer(answer), valid


class GatewayCalls:
    """
    The methods of L{geniam.interfaces.IGatewayAgent}, each one call of
    L{_verb}, which a subclass provides.
    """

    def _verb(self, verb: Verb, *args: Any) -> Deferred[Any]:
        raise NotImplementedError

    def get_switches(self) -> Deferred[list[str]]:
        """Fire with the island's switch DPIDs."""
        return self._verb(GET_SWITCHES)

    def get_links(self) -> Deferred[list[str]]:
        """Fire with the island's links."""
        return self._verb(GET_LINKS)

    def set_user_auth(self, keys: Sequence[str]) -> Deferred[None]:
        """Authorise these SSH public keys on the gateway."""
        return self._verb(SET_USER_AUTH, keys)

    def rem_user_auth(self, keys: Sequence[str]) -> Deferred[None]:
        """Remove these SSH public keys from the gateway."""
        return self._verb(REM_USER_AUTH, keys)

    def set_tcp_proxy(self, controller: str) -> Deferred[None]:
        """Forward the gateway's controller port to C{controller}."""
        return self._verb(SET_TCP_PROXY, controller)

    def rem_tcp_proxy(self) -> Deferred[None]:
        """Stop the proxy."""
        return self._verb(REM_TCP_PROXY)

    def set_ovs(self, vlan_map: Mapping[str, str]) -> Deferred[None]:
        """Apply the VLAN map."""
        return self._verb(SET_OVS, vlan_map)

    def rem_ovs(self) -> Deferred[None]:
        """Remove the VLAN map."""
        return self._verb(REM_OVS)

    def reset(self) -> Deferred[None]:
        """Restore the gateway's default configuration."""
        return self._verb(RESET)

    def state(self) -> Deferred[dict[str, Any]]:
        """Fire with C{{"users": [...], "proxy": str, "vlans": {...}}}: what the gateway holds."""
        return self._verb(STATE)
