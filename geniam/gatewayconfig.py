# -*- test-case-name: tests.test_foundation -*-
"""
The user parameters pushed to an island's gateway, validated strictly.

Both the aggregate manager (at Provision) and the gateway agent (on every
remote call) validate with these functions, so neither trusts the other.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from geniam.errors import GeniCode, GeniError

UNTAGGED = "0xffff"
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
_SSH_KEY = re.compile(
    r"^(ssh-(rsa|dss|ed25519)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)"
    r" [A-Za-z0-9+/]+={0,3}( [\x21-\x7e][\x20-\x7e]{0,255})?$"
)
MAX_KEYS = 64
MAX_VLANS = 4094


def parse_controller(text: object) -> tuple[str, int]:
    """
    Parse an OpenFlow controller address C{host:port} (IPv6 as C{[addr]:port}).

    @raise GeniError: BADARGS unless the host is an IP address or DNS name and 1 <= port <= 65535.
    """
    if not isinstance(text, str) or not text or len(text) > 300:
        raise GeniError(GeniCode.BADARGS, "controller must be a 'host:port' string")
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise GeniError(GeniCode.BADARGS, f"controller {text!r}: expected '[ipv6]:port'")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise GeniError(GeniCode.BADARGS, f"controller {text!r}: bad IPv6 address") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise GeniError(GeniCode.BADARGS, f"controller {text!r}: expected 'host:port'")
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            if not _HOSTNAME.match(host) or host.replace(".", "").isdigit():
                raise GeniError(GeniCode.BADARGS, f"controller {text!r}: bad host name") from None
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise GeniError(GeniCode.BADARGS, f"controller {text!r}: port must be 1-65535")
    return host, int(port)


def _vlan(value: object, what: str, allow_untagged: bool) -> str:
    text = str(value).strip().lower() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if text is None:
        raise GeniError(GeniCode.BADARGS, f"{what} VLAN must be a string or integer")
    if allow_untagged and text in (UNTAGGED, "untagged"):
        return UNTAGGED
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 4094:
        raise GeniError(GeniCode.BADARGS, f"{what} VLAN {str(value)[:20]!r} is not an id 1-4094" + (" or 0xffff (untagged)" if allow_untagged else ""))
    return str(int(text))


def validate_vlan_map(mapping: object) -> dict[str, str]:
    """
    Validate a VLAN map C{{testbed VLAN: island VLAN}}, e.g. C{{"10": "0xffff", "30": "20"}}.

    Keys are VLAN ids 1-4094; values are ids 1-4094 or C{0xffff} (untagged).
    Returns the map normalised to decimal strings.
    """
    if not isinstance(mapping, dict):
        raise GeniError(GeniCode.BADARGS, "VLAN map must be a struct {testbed_vlan: island_vlan}")
    if len(mapping) > MAX_VLANS:
        raise GeniError(GeniCode.BADARGS, "VLAN map too large")
    result: dict[str, str] = {}
    for key, value in mapping.items():
        result[_vlan(key, "testbed", False)] = _vlan(value, "island", True)
    untagged = [k for k, v in result.items() if v == UNTAGGED]
    if len(untagged) > 1:
        raise GeniError(GeniCode.BADARGS, "at most one testbed VLAN may be mapped to untagged")
    targets = [v for v in result.values() if v != UNTAGGED]
    if len(targets) != len(set(targets)):
        raise GeniError(GeniCode.BADARGS, "two testbed VLANs map to the same island VLAN")
    return result


def validate_ssh_key(key: object) -> str:
    """Validate one OpenSSH public key line (no newlines, known type, base64 body)."""
    if not isinstance(key, str):
        raise GeniError(GeniCode.BADARGS, "SSH key must be a string")
    text = key.strip()
    if not text or len(text) > 16384 or "\n" in text or "\r" in text or "\x00" in text:
        raise GeniError(GeniCode.BADARGS, "SSH key must be one non-empty line")
    if not _SSH_KEY.match(text):
        raise GeniError(GeniCode.BADARGS, f"not an OpenSSH public key: {text[:40]!r}...")
    return text


def validate_ssh_keys(keys: object) -> tuple[str, ...]:
    """Validate a list of SSH public keys; duplicates are dropped, order kept."""
    if not isinstance(keys, (list, tuple)):
        raise GeniError(GeniCode.BADARGS, "SSH keys must be a list of strings")
    if len(keys) > MAX_KEYS:
        raise GeniError(GeniCode.BADARGS, f"at most {MAX_KEYS} SSH keys")
    return tuple(dict.fromkeys(validate_ssh_key(k) for k in keys))


@dataclass(frozen=True)
class GatewayConfig:
    """What a started slot needs on the gateway: user keys, controller and VLAN map."""

    slice_urn: str
    ssh_keys: tuple[str, ...] = ()
    controller: str | None = None
    vlan_map: dict[str, str] = field(default_factory=dict)

    def validated(self) -> "GatewayConfig":
        """Return a copy with every field validated and normalised (raises GeniError)."""
        if self.controller is not None:
            parse_controller(self.controller)
        return GatewayConfig(
            self.slice_urn,
            validate_ssh_keys(list(self.ssh_keys)),
            self.controller,
            validate_vlan_map(dict(self.vlan_map)),
        )
