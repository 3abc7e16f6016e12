# -*- test-case-name: tests.loopback.test_operators -*-
"""
The AM's flags for operators and the booking policy: C{--operator}
(repeatable) and the policy's limits, also settable in the TOML file.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.python import usage

from geniam.booking.values import DEFAULT_MAX_SLOT_LENGTH
from geniam.config import duration, duration_or_off
from geniam.errors import GeniError
from geniam.managers.policy import DEFAULT_QUOTA_WINDOW, BookingPolicy

POLICY_PARAMETERS: list[list[Any]] = [
    ["max-slot-length", None, DEFAULT_MAX_SLOT_LENGTH, "The longest slot one booking may hold (e.g. 7d).", duration],
    ["min-slot-length", None, 0.0, "The shortest slot one booking may hold (0: no minimum).", duration_or_off],
    ["max-advance", None, 0.0, "How far ahead of now a slot may start (e.g. 90d; 0: no limit).", duration_or_off],
    ["user-quota", None, 0.0, "The most booked time one user may hold within --quota-window (0: no limit).", duration_or_off],
    ["slice-quota", None, 0.0, "The most booked time one slice may hold within --quota-window (0: no limit).", duration_or_off],
    ["quota-window", None, DEFAULT_QUOTA_WINDOW, "The window the quotas are counted in (e.g. 7d).", duration],
]
"""The booking policy's flags (see L{geniam.managers.policy.BookingPolicy})."""


class OperatorOption:
    """
    The repeatable C{--operator} flag (a mix-in for the AM's options): a
    URN, matched against client certificates verified by the trust roots,
    or a PEM certificate file, matched exactly.
    """

    def __init__(self) -> None:
        super().__init__()
        dict.__setitem__(self, "operator", [])  # type: ignore[arg-type,index]

    def opt_operator(self, value: str) -> None:
        """An operator: a URN under a trusted authority, or a certificate file (repeatable)."""
        self["operator"].append(str(value))  # type: ignore[index]

    def operators(self) -> Any:
        """The L{geniam.managers.operators.Operators} these options name."""
        from geniam.managers.operators import Operators
        from geniam.trust.gid import GID
        from geniam.urn import parse_urn

        urns, certificates = [], []
        for value in self["operator"]:  # type: ignore[index]
            if os.path.isfile(value):
                try:
                    with open(value, "rb") as f:
                        certificates.append(GID.from_pem(f.read()))
                except (OSError, ValueError, GeniError) as e:
                    raise usage.UsageError(f"--operator {value}: not a readable certificate: {e}") from None
                continue
            try:
                parse_urn(value)
            except GeniError as e:
                raise usage.UsageError(f"--operator {value}: neither a certificate file nor a URN: {e.output}") from None
            urns.append(value)
        return Operators.named(urns, certificates)

    def booking_policy(self) -> BookingPolicy:
        """The L{BookingPolicy} these options describe."""
        try:
            return BookingPolicy(
                max_slot_length=self["max-slot-length"],  # type: ignore[index]
                min_slot_length=self["min-slot-length"],  # type: ignore[index]
                max_advance=self["max-advance"],  # type: ignore[index]
                user_quota=self["user-quota"],  # type: ignore[index]
                slice_quota=self["slice-quota"],  # type: ignore[index]
                quota_window=self["quota-window"],  # type: ignore[index]
            )
        except ValueError as e:
            raise usage.UsageError(f"booking policy: {e}") from None
