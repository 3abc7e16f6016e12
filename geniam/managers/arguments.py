# -*- test-case-name: tests.managers.test_arguments -*-
"""
The AM API v3 arguments and standard options, read strictly.

Every function raises L{GeniError} (BADARGS, MISSINGARGS, BADVERSION) with
a message naming the offending argument, so callers never see a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterable

from geniam.errors import GeniCode, GeniError
from geniam.managers.errors import translating
from geniam.booking.values import MAX_EMAIL_LENGTH, Slot, UserKeys
from geniam.gatewayconfig import (
    MAX_KEYS_PER_USER,
    MAX_USERS,
    ControllerPolicy,
    canonical_controller,
    login_for,
    validate_ssh_keys,
    validate_vlan_map,
)
from geniam.timeutil import parse_time
from geniam.urn import URN, parse_urn

GENI_RSPEC_V3 = {
    "type": "GENI",
    "version": "3",
    "namespace": "http://www.geni.net/resources/rspec/3",
}


def flag(options: dict[str, Any], name: str, default: bool = False) -> bool:
    """Read a boolean option, accepting XML-RPC booleans, 0/1 and 'true'/'false'."""
    value = options.get(name, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "0", "1", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise GeniError(GeniCode.BADARGS, f"option {name} must be a boolean")


def optional_time(options: dict[str, Any], name: str) -> float | None:
    """Read an RFC 3339 time option, or None when absent."""
    if name not in options or options[name] in ("", None):
        return None
    try:
        return parse_time(options[name])
    except GeniError as e:
        raise GeniError(GeniCode.BADARGS, f"option {name}: {e.output}") from None


def rspec_version(options: dict[str, Any], supported: Iterable[dict[str, str]]) -> dict[str, str]:
    """
    Read the required C{geni_rspec_version} option.

    @return: the matching entry of C{supported}.
    @raise GeniError: BADARGS when missing or malformed, BADVERSION when not supported.
    """
    wanted = options.get("geni_rspec_version")
    if wanted is None:
        raise GeniError(GeniCode.BADARGS, "option geni_rspec_version is required, e.g. {type: GENI, version: 3}")
    if not isinstance(wanted, dict) or not isinstance(wanted.get("type"), str) or "version" not in wanted:
        raise GeniError(GeniCode.BADARGS, "option geni_rspec_version must be a struct {type, version}")
    kind, version = wanted["type"].strip().lower(), str(wanted["version"]).strip()
    for entry in supported:
        if entry["type"].lower() == kind and entry["version"] == version:
            return entry
    raise GeniError(GeniCode.BADVERSION, f"RSpec version {wanted['type']} {version} is not supported (use GENI 3)")


@dataclass(frozen=True)
class Target:
    """What a call's C{urns} argument names: a slice, or some of its slivers."""

    slice_urn: str | None
    sliver_urns: tuple[str, ...]


def target_urns(urns: Any) -> Target:
    """
    Read the C{urns} argument: exactly one slice URN, or one or more sliver URNs.

    @raise GeniError: BADARGS for anything else (mixes, several slices, other URN types).
    """
    if not isinstance(urns, list) or not urns:
        raise GeniError(GeniCode.BADARGS, "urns must be a non-empty list of slice or sliver URNs")
    if len(urns) > 1000:
        raise GeniError(GeniCode.TOOBIG, "at most 1000 URNs per call")
    parsed: list[URN] = [parse_urn(u) for u in urns]
    kinds = {p.type for p in parsed}
    if kinds == {"slice"}:
        if len({p.key for p in parsed}) > 1:
            raise GeniError(GeniCode.BADARGS, "urns may name only one slice")
        return Target(str(parsed[0]), ())
    if kinds == {"sliver"}:
        return Target(None, tuple(dict.fromkeys(str(p) for p in parsed)))
    if "slice" in kinds and "sliver" in kinds:
        raise GeniError(GeniCode.BADARGS, "urns must name either one slice or slivers, not both")
    other = sorted(kinds - {"slice", "sliver"})
    raise GeniError(GeniCode.BADARGS, f"urns must be slice or sliver URNs, not {', '.join(other)}")


def users_option(options: dict[str, Any]) -> tuple[UserKeys, ...] | None:
    """
    Read C{geni_users} (C{[{urn, keys: [...]}]}), or None when absent; the
    rules and limits are L{parse_users}'.
    """
    if "geni_users" not in options:
        return None
    try:
        return parse_users(options["geni_users"])
    except GeniError as e:
        raise GeniError(e.code, f"geni_users: {e.output}") from None


def vlans_option(options: dict[str, Any]) -> dict[str, str] | None:
    """
    Read C{geniam_vlans} (C{{testbed VLAN: island VLAN}}), validated by
    L{geniam.gatewayconfig.validate_vlan_map}, or None when absent.

    @raise GeniError: BADARGS naming the option if it is not a struct, or the rule broken.
    """
    vlans = options.get("geniam_vlans")
    if vlans is None:
        return None
    if not isinstance(vlans, dict):
        raise GeniError(GeniCode.BADARGS, "option geniam_vlans must be a struct {testbed VLAN: island VLAN}")
    return validate_vlan_map(vlans)


def string_option(options: dict[str, Any], name: str) -> str | None:
    """Read an optional string option."""
    value = options.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise GeniError(GeniCode.BADARGS, f"option {name} must be a string")
    return value


def options_struct(options: Any) -> dict[str, Any]:
    """Check that C{options} is a struct (the XML-RPC layer checks this too)."""
    if not isinstance(options, dict):
        raise GeniError(GeniCode.BADARGS, "options must be a struct")
    return options


def parse_users(value: object) -> tuple[UserKeys, ...]:
    """
    Validate C{geni_users}: a list of C{{"urn": user URN, "keys": [key, ...]}}.

    Entries for the same user are merged; keys are validated by
    L{geniam.gatewayconfig.validate_ssh_keys}. At most
    L{geniam.gatewayconfig.MAX_USERS} users with at most
    L{geniam.gatewayconfig.MAX_KEYS_PER_USER} keys each; a user whose login
    would be refused (C{root}, or starting with C{-}) is refused.

    @raise GeniError: BADARGS on anything malformed, naming the limit broken.
    """
    if not isinstance(value, (list, tuple)):
        raise GeniError(GeniCode.BADARGS, "users must be a list of {urn, keys} structs")
    if len(value) > MAX_USERS:
        raise GeniError(GeniCode.BADARGS, f"{len(value)} users; the limit is {MAX_USERS}")
    merged: dict[str, tuple[str, tuple[str, ...]]] = {}
    for entry in value:
        if not isinstance(entry, Mapping) or "urn" not in entry:
            raise GeniError(GeniCode.BADARGS, "each user must be a struct with 'urn' and 'keys'")
        urn = parse_urn(entry["urn"], "user")
        login_for(urn.name)
        keys = validate_ssh_keys(entry.get("keys", []), MAX_KEYS_PER_USER, f"SSH keys for {urn}")
        spelling = str(entry["urn"])
        previous = merged.get(urn.key)
        if previous is not None:
            spelling, keys = previous[0], tuple(dict.fromkeys(previous[1] + keys))
            if len(keys) > MAX_KEYS_PER_USER:
                raise GeniError(GeniCode.BADARGS, f"{len(keys)} SSH keys for {urn}; the limit is {MAX_KEYS_PER_USER}")
        merged[urn.key] = (spelling, keys)
    return tuple(UserKeys(urn, keys) for urn, keys in merged.values())


def validate_email(value: object) -> str:
    """
    Check an owner e-mail address loosely: a short printable string, possibly empty.

    @raise GeniError: BADARGS otherwise.
    """
    if not isinstance(value, str) or len(value) > MAX_EMAIL_LENGTH or any(c.isspace() or not c.isprintable() for c in value):
        raise GeniError(GeniCode.BADARGS, "owner e-mail must be a printable string without spaces")
    return value


def validate_controller(value: object, policy: ControllerPolicy | None = None) -> str | None:
    """
    Return a controller's canonical C{host:port}, or None for None or C{""}.

    @param policy: where controllers may be; without one only the syntax is checked.
    @raise GeniError: BADARGS if malformed, REFUSED if C{policy} forbids it.
    """
    if value is None or value == "":
        return None
    if policy is not None:
        return policy.check(value)
    return canonical_controller(value)


slot_argument = translating(Slot)
"""A L{Slot} from a request's times: BADARGS unless it ends after it starts, within range."""


def check_slot(slot: object, what: str = "slot") -> Slot:
    """
    Return C{slot} if it is a L{Slot}.

    @raise GeniError: BADARGS otherwise.
    """
    if not isinstance(slot, Slot):
        raise GeniError(GeniCode.BADARGS, f"{what} must be a time slot")
    return slot


def check_time(value: object, what: str) -> float | None:
    """
    Return C{value} as seconds since the epoch, or None for None.

    @raise GeniError: BADARGS unless it is a finite number.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GeniError(GeniCode.BADARGS, f"{what} must be a time")
    return float(value)
