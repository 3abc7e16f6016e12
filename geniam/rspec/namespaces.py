# -*- test-case-name: tests.rspec.test_advertisement -*-
"""
XML namespaces, schema locations and RSpec version structs.

The island extension namespace, L{ISLAND_NS}, is described in
L{geniam.rspec.island}.
"""

from __future__ import annotations

from typing import Any

RSPEC_NS = "http://www.geni.net/resources/rspec/3"
"""The GENI RSpec v3 namespace (advertisement, request and manifest)."""

OPSTATE_NS = "http://www.geni.net/resources/rspec/ext/opstate/1"
"""The advertisement extension describing operational states and actions."""

USER_NS = "http://www.geni.net/resources/rspec/ext/user/1"
"""The manifest extension listing login accounts and their public keys."""

ISLAND_NS = "urn:geniam:rspec:ext:island:1"
"""The geniam island extension: time slot, controller, VLAN map, schedule."""

ISLAND_PREFIX = "island"
"""The conventional prefix of L{ISLAND_NS}."""

XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
"""The XML Schema instance namespace (for C{xsi:schemaLocation})."""

RSPEC_SCHEMAS = {
    "advertisement": f"{RSPEC_NS}/ad.xsd",
    "request": f"{RSPEC_NS}/request.xsd",
    "manifest": f"{RSPEC_NS}/manifest.xsd",
}
"""The GENI v3 schema of each RSpec type."""

OPSTATE_SCHEMA = f"{OPSTATE_NS}/ad.xsd"
"""The schema of the operational-state extension."""

USER_SCHEMA = f"{USER_NS}/manifest.xsd"
"""The schema of the login-user extension."""

RSPEC_TYPES = ("advertisement", "request", "manifest")
"""The values of the C{type} attribute of C{<rspec>}."""


def qname(namespace: str, local: str) -> str:
    """Return the Clark notation C{{namespace}local} lxml uses for names."""
    return f"{{{namespace}}}{local}"


def rspec_tag(local: str) -> str:
    """Return the Clark name of a core GENI v3 element, e.g. C{node}."""
    return qname(RSPEC_NS, local)


def island_tag(local: str) -> str:
    """Return the Clark name of an island extension element, e.g. C{slot}."""
    return qname(ISLAND_NS, local)


def rspec_version_struct(kind: str) -> dict[str, Any]:
    """
    Return the GetVersion struct naming GENI v3 for C{kind}.

    @param kind: C{"ad"} for C{geni_ad_rspec_versions}, C{"request"} for
        C{geni_request_rspec_versions}.
    @return: C{{type, version, schema, namespace, extensions}}, every key
        present as AM API v3 requires.
    """
    if kind not in ("ad", "request"):
        raise ValueError(f"unknown RSpec version kind {kind!r}")
    schema = RSPEC_SCHEMAS["advertisement" if kind == "ad" else "request"]
    extensions = [ISLAND_NS, OPSTATE_NS] if kind == "ad" else [ISLAND_NS, USER_NS]
    return {
        "type": "GENI",
        "version": "3",
        "schema": schema,
        "namespace": RSPEC_NS,
        "extensions": extensions,
    }
