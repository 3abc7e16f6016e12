# -*- test-case-name: tests.managers.test_slice,tests.loopback.test_am -*-
"""
What the aggregate manager and the slice manager say of themselves in GetVersion.
"""

from __future__ import annotations

from typing import Any

from geniam import __version__
from geniam.errors import success_struct
from geniam.managers.arguments import GENI_RSPEC_V3
from geniam.rspec.namespaces import rspec_version_struct

CREDENTIAL_TYPES = [
    {"geni_type": "geni_sfa", "geni_version": "3"},
    {"geni_type": "geni_sfa", "geni_version": "2"},
    {"geni_type": "geni_abac", "geni_version": "1"},
]
"""The credential types both managers accept."""

SUPPORTED_RSPECS = (GENI_RSPEC_V3,)
"""The RSpec versions both managers read and write."""


def get_version_struct(url: str, urn: str, allocate: str, **extra: Any) -> dict[str, Any]:
    """
    The GetVersion return struct of a geniam manager.

    @param url: its AM API v3 URL.
    @param urn: its URN.
    @param allocate: its C{geni_allocate} (C{geni_disjoint}, C{geni_many}).
    @param extra: further members of the value.
    """
    value = {
        "geni_api": 3,
        "geni_api_versions": {"3": url},
        "geni_request_rspec_versions": [rspec_version_struct("request")],
        "geni_ad_rspec_versions": [rspec_version_struct("ad")],
        "geni_credential_types": CREDENTIAL_TYPES,
        "geni_single_allocation": 0,
        "geni_allocate": allocate,
        "geni_am_type": "geniam",
        "geni_am_code": __version__,
        "urn": urn,
        **extra,
    }
    struct = success_struct(value)
    struct["geni_api"] = 3
    return struct
