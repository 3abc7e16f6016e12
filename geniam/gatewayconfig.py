# -*- test-case-name: tests.test_gatewayconfig,tests.test_foundation -*-
"""
The user parameters pushed to an island's gateway, validated strictly.

Both the aggregate manager (where a request enters) and the gateway agent
(on every remote call) validate with these functions, so neither trusts the
other. Every check is a full match over a closed set of ASCII characters:
no control characters, no NUL, nothing before or after the value. What
leaves a validator is a canonical re-formatting of the value, never the
caller's text: a controller comes out as C{host:port} rebuilt from the
parsed address and number.

The limits a real island needs (and no more) are here too, with the
controller network policy: by default a controller must be a literal public
IP address; an operator may allow more networks.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Union

from geniam.errors import GeniCode, GeniError

UNTAGGED = "0xffff"

MAX_VLANS = 32
"""At most this many entries in one VLAN map."""

MAX_USERS = 32
"""At most this many users (C{geni_users} entries) on one booking."""

MAX_KEYS_PER_USER = 8
"""At most this many SSH keys per user."""

MAX_KEYS = MAX_USERS * MAX_KEYS_PER_USER
"""At most this many SSH keys in one list sent to the gateway."""

MAX_KEY_LENGTH = 4096
"""At most this many characters in one SSH public key line (an RSA-16384 key is about 2,800)."""

MAX_LOGIN_LENGTH = 32
"""At most this many characters in a login name."""

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}\.?")
_IPV4 = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_IPV6 = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_SCOPE = re.compile(r"[A-Za-z0-9_.\-]{1,15}")
_PORT = re.compile(r"[0-9]{1,5}")
_VLAN_ID = re.compile(r"[0-9]{1,4}")
_SSH_KEY = re.compile(
    r"(?:ssh-(?:rsa|dss|ed25519)|ecdsa-sha2-nistp(?:256|384|521)|sk-(?:ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)"
    r" [A-Za-z0-9+/]+={0,3}(?: [\x21-\x7e][\x20-\x7e]{0,255})?"
)
_LOGIN = re.compile(r"[A-Za-z0-9_.\-]{1,32}")
_LOGIN_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")
RESERVED_LOGINS = frozenset({"root"})
"""Login names never given to a user."""

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


def _shown(text: str, limit: int = 60) -> str:
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def _bad_controller(text: str, why: str) -> GeniError:
    return GeniError(GeniCode.BADARGS, f"controller {_shown(text)}: {why}")


def _parse_host(text: str, host: str) -> str:
    """Return the canonical form of an IPv4 address or DNS name (BADARGS otherwise)."""
    if _IPV4.fullmatch(host):
        try:
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise _bad_controller(text, "bad IPv4 address") from None
    if not _HOSTNAME.fullmatch(host) or len(host) > 253:
        raise _bad_controller(text, "bad host name")
    canonical = host.rstrip(".").lower()
    if canonical.rpartition(".")[2].isdigit():
        raise _bad_controller(text, "bad host name (a numeric last label is not a name)")
    return canonical


def _parse_ipv6(text: str, host: str) -> str:
    """Return the canonical form of an IPv6 address with an optional strict scope id."""
    address, percent, scope = host.partition("%")
    if not _IPV6.fullmatch(address) or (percent and not _SCOPE.fullmatch(scope)):
        raise _bad_controller(text, "bad IPv6 address (scope ids are interface names or numbers: letters, digits, . _ -)")
    try:
        parsed = ipaddress.IPv6Address(address)
    except ValueError:
        raise _bad_controller(text, "bad IPv6 address") from None
    return f"{parsed.compressed}%{scope}" if percent else parsed.compressed


def parse_controller(text: object) -> tuple[str, int]:
    """
    Parse an OpenFlow controller address C{host:port} (IPv6 as C{[addr]:port}).

    The host is an IPv4 address, a bracketed IPv6 address (with an optional
    scope id made of letters, digits, C{.}, C{_} and C{-}) or a DNS name;
    the port is 1-65535 in ASCII digits. The whole text must match.

    @return: the canonical host (IPv6 without brackets, names in lower case
        without a trailing dot) and the port number.
    @raise GeniError: BADARGS for anything else.
    """
    if not isinstance(text, str) or not text:
        raise GeniError(GeniCode.BADARGS, "controller must be a non-empty 'host:port' string")
    if len(text) > 300:
        raise _bad_controller(text, "longer than 300 characters")
    if text.startswith("["):
        inside, sep, port = text[1:].partition("]:")
        if not sep:
            raise _bad_controller(text, "expected '[ipv6]:port'")
        host = _parse_ipv6(text, inside)
    else:
        raw_host, sep, port = text.rpartition(":")
        if not sep or not raw_host:
            raise _bad_controller(text, "expected 'host:port'")
        host = _parse_host(text, raw_host)
    if not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535:
        raise _bad_controller(text, "port must be 1-65535")
    return host, int(port)


def format_controller(host: str, port: int) -> str:
    """Format a parsed controller as C{host:port} (C{[ipv6]:port})."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def canonical_controller(text: object) -> str:
    """
    Validate a controller (see L{parse_controller}) and return it re-formatted
    from its parts: the only form of a controller that goes any further.
    """
    return format_controller(*parse_controller(text))


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """
    Parse networks given by an operator (C{10.0.0.0/8}, C{::1/128}, or a single address).

    @raise ValueError: naming the first value that is not a network.
    """
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise ValueError(f"{str(value)[:60]!r} is not an IP network (e.g. 10.0.0.0/8 or fd00::/8)") from None
    return tuple(dict.fromkeys(networks))


LOOPBACK_NETWORKS = parse_networks(["127.0.0.0/8", "::1/128"])
"""The networks a federation on one machine (the demo) allows controllers in."""


@dataclass(frozen=True)
class ControllerPolicy:
    """
    Where a controller may be: literal IP addresses only, public ones
    (C{is_global}, not multicast) or in a network the operator allowed.

    Host names are refused: the address a name resolves to can change
    between the check and the connection, so only an address can be checked.

    @ivar networks: networks allowed besides the public addresses.
    """

    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def allowing(cls, networks: Iterable[str]) -> "ControllerPolicy":
        """A policy allowing public addresses and C{networks} (see L{parse_networks})."""
        return cls(parse_networks(networks))

    def describe(self) -> str:
        """The rule in words, for refusals and the log."""
        extra = ", ".join(str(n) for n in self.networks)
        return "public IP addresses" + (f" and {extra}" if extra else "")

    def check(self, controller: object) -> str:
        """
        Validate C{controller} and apply the policy.

        @return: the canonical C{host:port}.
        @raise GeniError: BADARGS if malformed, REFUSED if the policy forbids it.
        """
        host, port = parse_controller(controller)
        canonical = format_controller(host, port)
        try:
            address: IPAddress = ipaddress.ip_address(host)
        except ValueError:
            raise GeniError(
                GeniCode.REFUSED,
                f"controller {canonical}: give the controller's IP address; host names are not accepted "
                f"(allowed: {self.describe()})",
            ) from None
        if any(address in network for network in self.networks):
            return canonical
        if address.is_global and not address.is_multicast:
            return canonical
        raise GeniError(
            GeniCode.REFUSED,
            f"controller {canonical} is not a public address; this gateway allows controllers at {self.describe()}",
        )


def _vlan(value: object, what: str, allow_untagged: bool) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise GeniError(GeniCode.BADARGS, f"{what} VLAN must be a string or integer")
    text = str(value)
    if allow_untagged and text.lower() in (UNTAGGED, "untagged"):
        return UNTAGGED
    if not _VLAN_ID.fullmatch(text) or not 1 <= int(text) <= 4094:
        raise GeniError(
            GeniCode.BADARGS,
            f"{what} VLAN {_shown(text, 20)} is not an id 1-4094" + (" or 0xffff (untagged)" if allow_untagged else ""),
        )
    return str(int(text))


def validate_vlan_map(mapping: object) -> dict[str, str]:
    """
    Validate a VLAN map C{{testbed VLAN: island VLAN}}, e.g. C{{"10": "0xffff", "30": "20"}}.

    Keys are VLAN ids 1-4094; values are ids 1-4094 or C{0xffff} (untagged).
    At most L{MAX_VLANS} entries; two keys naming one VLAN (C{10} and C{010})
    are refused, as are two testbed VLANs on one island VLAN.

    @return: the map normalised to decimal strings.
    @raise GeniError: BADARGS naming the rule broken.
    """
    if not isinstance(mapping, dict):
        raise GeniError(GeniCode.BADARGS, "VLAN map must be a struct {testbed_vlan: island_vlan}")
    if len(mapping) > MAX_VLANS:
        raise GeniError(GeniCode.BADARGS, f"VLAN map has {len(mapping)} entries; the limit is {MAX_VLANS}")
    result: dict[str, str] = {}
    for key, value in mapping.items():
        testbed = _vlan(key, "testbed", False)
        if testbed in result:
            raise GeniError(GeniCode.BADARGS, f"testbed VLAN {testbed} is mapped twice (as {_shown(str(key), 20)} too)")
        result[testbed] = _vlan(value, "island", True)
    untagged = [k for k, v in result.items() if v == UNTAGGED]
    if len(untagged) > 1:
        raise GeniError(GeniCode.BADARGS, "at most one testbed VLAN may be mapped to untagged")
    targets = [v for v in result.values() if v != UNTAGGED]
    if len(targets) != len(set(targets)):
        raise GeniError(GeniCode.BADARGS, "two testbed VLANs map to the same island VLAN")
    return result


def validate_ssh_key(key: object) -> str:
    """
    Validate one OpenSSH public key line: a known type, a base64 body and an
    optional printable ASCII comment, at most L{MAX_KEY_LENGTH} characters.
    Surrounding white space is dropped; nothing else is.
    """
    if not isinstance(key, str):
        raise GeniError(GeniCode.BADARGS, "SSH key must be a string")
    text = key.strip(" \t\r\n")
    if len(text) > MAX_KEY_LENGTH:
        raise GeniError(GeniCode.BADARGS, f"SSH key of {len(text)} characters; the limit is {MAX_KEY_LENGTH}")
    if not _SSH_KEY.fullmatch(text):
        raise GeniError(GeniCode.BADARGS, f"not a one-line OpenSSH public key: {_shown(text, 40)}")
    return text


def validate_ssh_keys(keys: object, limit: int = MAX_KEYS, what: str = "SSH keys") -> tuple[str, ...]:
    """
    Validate a list of SSH public keys; duplicates are dropped, order kept.

    @param limit: the most keys the list may hold.
    @param what: what the list is, for the refusal.
    """
    if not isinstance(keys, (list, tuple)):
        raise GeniError(GeniCode.BADARGS, f"{what} must be a list of strings")
    if len(keys) > limit:
        raise GeniError(GeniCode.BADARGS, f"{len(keys)} {what}; the limit is {limit}")
    return tuple(dict.fromkeys(validate_ssh_key(k) for k in keys))


def validate_login(name: object) -> str:
    """
    Check a login name shown to users (it becomes C{ssh LOGIN@gateway}):
    letters, digits, C{.}, C{_} and C{-}, at most L{MAX_LOGIN_LENGTH}, not
    starting with C{-} and not a reserved name such as C{root}.

    @raise GeniError: BADARGS otherwise.
    """
    if not isinstance(name, str) or not _LOGIN.fullmatch(name):
        raise GeniError(GeniCode.BADARGS, f"bad login name {_shown(str(name), 40)} (letters, digits, . _ -; at most 32)")
    if name.startswith("-"):
        raise GeniError(GeniCode.BADARGS, f"login name {name!r} may not start with '-'")
    if name.lower() in RESERVED_LOGINS:
        raise GeniError(GeniCode.BADARGS, f"login name {name!r} is reserved")
    return name


def login_for(user_name: str) -> str:
    """
    The login of a user whose URN name is C{user_name}: the name with other
    characters replaced by C{_}, cut to L{MAX_LOGIN_LENGTH}, then checked by
    L{validate_login}.
    """
    return validate_login(_LOGIN_CHARS.sub("_", user_name)[:MAX_LOGIN_LENGTH])


def limits_struct() -> dict[str, int]:
    """The limits as GetVersion advertises them (C{geniam_limits})."""
    return {
        "vlans": MAX_VLANS,
        "users": MAX_USERS,
        "keys_per_user": MAX_KEYS_PER_USER,
        "key_length": MAX_KEY_LENGTH,
    }


def printable(value: object, limit: int = 300) -> str:
    """
    C{value} as text safe for one log line: control characters (and other
    non-printable ones) escaped as Python does, cut to C{limit} characters.
    """
    text = value if isinstance(value, str) else str(value)
    text = text[:limit]
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def string_values(values: Sequence[object]) -> list[str]:
    """Return C{values} as strings, refusing any with a NUL or other control character (REFUSED)."""
    result = []
    for value in values:
        text = str(value)
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            raise GeniError(GeniCode.REFUSED, f"refusing a command argument with a control character: {printable(text, 60)}")
        result.append(text)
    return result
