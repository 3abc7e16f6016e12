"""
twistd plugins for geniam's three roles.

The wiring lives in L{geniam.tap}, named as a string so that a plugin scan
imports none of geniam's code.
"""

from twisted.application.service import ServiceMaker

geniam_am = ServiceMaker(
    "geniam aggregate manager",
    "geniam.tap.am",
    "A GENI AM API v3 aggregate manager booking an island by time slot.",
    "geniam-am",
)
geniam_sm = ServiceMaker(
    "geniam slice manager",
    "geniam.tap.sm",
    "A GENI AM API v3 slice manager federating many aggregates.",
    "geniam-sm",
)
geniam_agent = ServiceMaker(
    "geniam gateway agent",
    "geniam.tap.agent",
    "The island gateway agent, controlled by the aggregate manager over Perspective Broker.",
    "geniam-agent",
)
