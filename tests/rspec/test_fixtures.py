"""
Shared data for the RSpec tests: an island, its aggregate, a user and a
few request documents. This module holds no tests.
"""

from __future__ import annotations

from lxml import etree

from geniam.rspec.namespaces import RSPEC_NS
from geniam.rspec.resources import IslandResources

AM = "urn:publicid:IDN+island.example+authority+am"
OTHER_AM = "urn:publicid:IDN+other.example+authority+am"
THIRD_AM = "urn:publicid:IDN+third.example+authority+cm"

DPID1 = "00:00:00:00:00:00:00:01"
DPID2 = "00:00:00:00:00:00:00:02"
DPID3 = "00:00:00:00:00:00:00:03"
LINK12 = f"{DPID1}:1-{DPID2}:3"
LINK23 = f"{DPID2}:4-{DPID3}:1"

START = 1_800_000_000.0
END = START + 7200.0

ALICE = "urn:publicid:IDN+geni:gpo:gcf+user+alice"
ALICE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0a2V5 alice@example"
SLIVER = "urn:publicid:IDN+island.example+sliver+b1"
SLIVER2 = "urn:publicid:IDN+island.example+sliver+b2"

NS = {"g": RSPEC_NS}


def island(**options: object) -> IslandResources:
    """The three-switch test island."""
    return IslandResources.create(AM, [DPID1, DPID2, DPID3], [LINK12, LINK23], **options)


def xml(text: str) -> etree._Element:
    """Parse test output with a plain parser (the documents are our own)."""
    return etree.fromstring(text.encode("utf-8"))


def request_document(body: str, rspec_type: str = "request") -> str:
    """Wrap C{body} in a GENI v3 C{<rspec>} declaring the island namespace."""
    return (
        f'<rspec xmlns="{RSPEC_NS}" xmlns:island="urn:geniam:rspec:ext:island:1" '
        f'type="{rspec_type}">{body}</rspec>'
    )
