"""
The seams between geniam's layers, as zope.interface declarations.

Every implementation has a C{verifyObject} test, so a new island type,
store or gateway plugs in without touching the others.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface


class IGatewayAgent(Interface):
    """
    The island gateway's agent, as seen by the aggregate manager.

    Every method returns a Deferred and is idempotent: applying what is
    already applied, or removing what is absent, succeeds. Arguments are
    validated by L{geniam.gatewayconfig} on both sides. Failures are
    L{geniam.errors.GeniError} (RPCERROR when the agent is unreachable,
    REFUSED or BADARGS when it declined).
    """

    def get_switches():  # type: ignore[misc]
        """Fire with the list of switch DPIDs (strings like C{00:00:00:00:00:00:00:01})."""

    def get_links():  # type: ignore[misc]
        """Fire with the list of links as C{DPID:port-DPID:port} strings."""

    def set_user_auth(keys):  # type: ignore[misc]
        """Install these SSH public keys as the gateway's authorised users; fire with None."""

    def rem_user_auth(keys):  # type: ignore[misc]
        """Remove these SSH public keys; fire with None."""

    def set_tcp_proxy(controller):  # type: ignore[misc]
        """Forward the gateway's controller port to C{host:port}; fire with None."""

    def rem_tcp_proxy():  # type: ignore[misc]
        """Stop the TCP proxy; fire with None."""

    def set_ovs(vlan_map):  # type: ignore[misc]
        """Apply the VLAN map C{{testbed vlan: island vlan}} (strings); fire with None."""

    def rem_ovs():  # type: ignore[misc]
        """Remove the VLAN mapping; fire with None."""

    def reset():  # type: ignore[misc]
        """Restore the default configuration (no users, no proxy, no VLANs); fire with None."""

    def state():  # type: ignore[misc]
        """
        Fire with what is applied now: C{{"users": [key, ...], "proxy": "host:port" or "",
        "vlans": {testbed: island}}}.
        """
