# -*- test-case-name: tests.managers.test_aggregate,tests.managers.test_island -*-
"""
The managers' edge: the booking core's and the store's domain errors as
the GENI codes callers see.

The core and the store raise errors in their own words; an
L{geniam.interfaces.IResourceManager} answers every failure as a
L{GeniError}, translated here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from geniam.booking.errors import BookingConflict, BookingError, InvalidBooking, NotCurrent, NotPermitted, OutOfRange
from geniam.errors import GeniCode, GeniError
from geniam.store.errors import DuplicateBooking, StaleBooking, StoreError, StoreFailure, TicketHeld, UnknownBooking
from geniam.store.transactions import NoTransaction, StaleTransaction, TransactionExists

T = TypeVar("T")

DomainError = (BookingError, StoreFailure)
"""The domain errors that L{as_geni_error} translates."""

GENI_CODES: dict[type[Exception], GeniCode] = {
    InvalidBooking: GeniCode.BADARGS,
    OutOfRange: GeniCode.OUTOFRANGE,
    NotPermitted: GeniCode.REFUSED,
    NotCurrent: GeniCode.SEARCHFAILED,
    BookingConflict: GeniCode.UNAVAILABLE,
    StaleBooking: GeniCode.BUSY,
    UnknownBooking: GeniCode.SEARCHFAILED,
    DuplicateBooking: GeniCode.ALREADYEXISTS,
    TicketHeld: GeniCode.REFUSED,
    StoreError: GeniCode.DBERROR,
    TransactionExists: GeniCode.INPROGRESS,
    NoTransaction: GeniCode.ERROR,
    StaleTransaction: GeniCode.BUSY,
}
"""Each domain error's GENI code (a subclass takes its nearest listed ancestor's)."""


class TranslatedError(GeniError):
    """
    A domain error as a L{GeniError}.

    @ivar cause: the domain error.
    """

    def __init__(self, code: GeniCode, cause: Exception) -> None:
        super().__init__(code, getattr(cause, "message", str(cause)))
        self.cause = cause


def as_geni_error(error: BookingError | StoreFailure) -> GeniError:
    """Return the L{GeniError} a caller sees for a domain error (ERROR for one not listed)."""
    for kind in type(error).__mro__:
        code = GENI_CODES.get(kind)
        if code is not None:
            return TranslatedError(code, error)
    return TranslatedError(GeniCode.ERROR, error)


def translating(function: Callable[..., T]) -> Callable[..., T]:
    """Wrap a synchronous function so that its domain errors leave it as L{GeniError}s."""

    def call(*args: object, **kwargs: object) -> T:
        try:
            return function(*args, **kwargs)
        except DomainError as e:
            raise as_geni_error(e) from None

    call.__doc__ = function.__doc__
    call.__name__ = getattr(function, "__name__", "call")
    return call
