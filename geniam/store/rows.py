# -*- test-case-name: tests.test_store_sqlite -*-
"""
Bookings as database rows, shared by every SQL store.

The C{bookings} table holds one row per booking: the fields of
L{geniam.booking.Booking}, plus derived columns the queries index on
(normalised URNs, the island, whether the booking is live). Users and the
VLAN map are JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from geniam.booking import AllocationState, Booking, OperationalState, Slot, UserKeys

BOOKING_COLUMNS: tuple[str, ...] = (
    "sliver_urn",
    "slice_urn",
    "owner_urn",
    "owner_email",
    "start_time",
    "end_time",
    "allocation_state",
    "allocation_expires",
    "operational_state",
    "error",
    "users",
    "controller",
    "vlan_map",
    "applied",
    "created",
    "updated",
    "provisioned_at",
    "version",
)
"""The columns a booking is read back from, in the order L{row_to_booking} takes them."""

DERIVED_COLUMNS: tuple[str, ...] = ("sliver_key", "island", "slice_key", "live")
"""The indexed columns computed from a booking when it is written."""

ALL_COLUMNS: tuple[str, ...] = DERIVED_COLUMNS + BOOKING_COLUMNS
"""Every column of the C{bookings} table, in the order L{booking_to_row} returns them."""

SELECT_LIST = ", ".join(BOOKING_COLUMNS)
"""The column list to SELECT for L{row_to_booking}."""


def _users_json(users: Sequence[UserKeys]) -> str:
    return json.dumps([{"urn": u.urn, "keys": list(u.keys)} for u in users], separators=(",", ":"))


def booking_to_row(booking: Booking, island: str, version: int) -> tuple[Any, ...]:
    """Return the values of L{ALL_COLUMNS} for C{booking}, stored with C{version}."""
    return (
        booking.sliver_key,
        island,
        booking.slice_key,
        1 if booking.live else 0,
        booking.sliver_urn,
        booking.slice_urn,
        booking.owner_urn,
        booking.owner_email,
        booking.slot.start,
        booking.slot.end,
        booking.allocation_state.value,
        booking.allocation_expires,
        booking.operational_state.value,
        booking.error,
        _users_json(booking.users),
        booking.controller,
        json.dumps(dict(booking.vlan_map), sort_keys=True, separators=(",", ":")),
        1 if booking.applied else 0,
        booking.created,
        booking.updated,
        booking.provisioned_at,
        version,
    )


def row_to_booking(row: Sequence[Any]) -> Booking:
    """Build a L{Booking} from the values of L{BOOKING_COLUMNS}."""
    values = dict(zip(BOOKING_COLUMNS, row))
    users = tuple(UserKeys(str(u["urn"]), tuple(str(k) for k in u["keys"])) for u in json.loads(values["users"]))
    return Booking(
        sliver_urn=values["sliver_urn"],
        slice_urn=values["slice_urn"],
        owner_urn=values["owner_urn"],
        owner_email=values["owner_email"],
        slot=Slot(values["start_time"], values["end_time"]),
        allocation_state=AllocationState(values["allocation_state"]),
        allocation_expires=float(values["allocation_expires"]),
        operational_state=OperationalState(values["operational_state"]),
        error=values["error"],
        users=users,
        controller=values["controller"],
        vlan_map={str(k): str(v) for k, v in json.loads(values["vlan_map"]).items()},
        applied=bool(values["applied"]),
        created=float(values["created"]),
        updated=float(values["updated"]),
        provisioned_at=None if values["provisioned_at"] is None else float(values["provisioned_at"]),
        version=int(values["version"]),
    )
