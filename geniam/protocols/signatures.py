# -*- test-case-name: tests.protocols.test_signatures -*-
"""
Declarative XML-RPC method signatures and the argument checks they run.

A L{Signature} lists the positional parameters of one method; each
L{Param} names a checker that returns the (possibly normalised) value or
raises L{GeniError} with BADARGS. Binding too few arguments raises
MISSINGARGS, too many BADARGS. A method set is a plain mapping from the
XML-RPC method name to its signature, such as L{API_V3_SIGNATURES};
other method sets are built the same way and merged into one mapping
(C{{**API_V3_SIGNATURES, **TICKET_SIGNATURES}}).

Only the shape of the arguments is checked here, never their meaning.
"""

from __future__ import annotations

import xmlrpc.client
from xmlrpc.client import Binary
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from geniam.errors import GeniCode, GeniError
from geniam.timeutil import format_time, from_datetime

Checker = Callable[[str, Any], Any]
"""C{checker(parameter_name, value) -> value}, raising L{GeniError} (BADARGS)."""


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (bytes, bytearray, xmlrpc.client.Binary)):
        return "base64"
    if isinstance(value, (datetime, xmlrpc.client.DateTime)):
        return "dateTime.iso8601"
    if isinstance(value, dict):
        return "struct"
    if isinstance(value, (list, tuple)):
        return "array"
    if value is None:
        return "nil"
    return type(value).__name__


def _bad(name: str, expected: str, value: Any) -> GeniError:
    return GeniError(GeniCode.BADARGS, f"argument {name!r} must be {expected}, not {_type_name(value)}")


def string(name: str, value: Any) -> str:
    """Accept an XML-RPC string."""
    if not isinstance(value, str):
        raise _bad(name, "a string", value)
    return value


def time_string(name: str, value: Any) -> str:
    """
    Accept an RFC 3339 string; a C{dateTime.iso8601} value (sent by some
    older clients) is converted to one, taken as UTC. The text itself is
    not parsed here.
    """
    if isinstance(value, datetime):
        return format_time(from_datetime(value))
    if isinstance(value, xmlrpc.client.DateTime):
        return format_time(from_datetime(datetime.strptime(value.value, "%Y%m%dT%H:%M:%S")))
    if not isinstance(value, str):
        raise _bad(name, "an RFC 3339 date-time string", value)
    return value


def boolean(name: str, value: Any) -> bool:
    """Accept an XML-RPC boolean, or the integers 0 and 1."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _bad(name, "a boolean", value)


def integer(name: str, value: Any) -> int:
    """Accept an XML-RPC integer (not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, "an int", value)
    return value


def struct(name: str, value: Any) -> dict[str, Any]:
    """Accept an XML-RPC struct."""
    if not isinstance(value, dict):
        raise _bad(name, "a struct", value)
    return value


def string_list(name: str, value: Any) -> list[str]:
    """Accept an array whose every element is a string."""
    if not isinstance(value, list):
        raise _bad(name, "an array of strings", value)
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise _bad(f"{name}[{index}]", "a string", item)
    return value


def credential_list(name: str, value: Any) -> list[dict[str, Any] | str]:
    """
    Accept an array of credential structs or bare credential strings.

    Some clients (geni-lib) send the credential document as C{base64}
    rather than a string; such values are decoded to text here.
    """
    if not isinstance(value, list):
        raise _bad(name, "an array of credentials", value)
    result: list[dict[str, Any] | str] = []
    for index, item in enumerate(value):
        if isinstance(item, Binary):
            item = _text(f"{name}[{index}]", item)
        elif isinstance(item, dict) and isinstance(item.get("geni_value"), Binary):
            item = {**item, "geni_value": _text(f"{name}[{index}].geni_value", item["geni_value"])}
        if not isinstance(item, (dict, str)):
            raise _bad(f"{name}[{index}]", "a credential struct or string", item)
        result.append(item)
    return result


def _text(name: str, value: Binary) -> str:
    try:
        return bytes(value.data).decode("utf-8")
    except UnicodeDecodeError:
        raise GeniError(GeniCode.BADARGS, f"{name} is not UTF-8 text") from None


def anything(name: str, value: Any) -> Any:
    """Accept any value."""
    return value


@dataclass(frozen=True)
class Param:
    """
    One positional parameter.

    @ivar name: the name used in error messages.
    @ivar check: the L{Checker} run on the value.
    @ivar default: when not C{None}, the parameter may be omitted and this
        factory supplies its value.
    @ivar presented: the parameter carries the caller's credentials, which
        the edge takes out into the call's context (L{Signature.presented}).
    """

    name: str
    check: Checker
    default: Callable[[], Any] | None = None
    presented: bool = False


@dataclass(frozen=True)
class Signature:
    """
    The positional parameters of one method, and the attribute that serves it.

    @ivar params: the parameters in order; optional ones come last.
    @ivar target: the attribute of the API object to call, or C{None} for
        the XML-RPC method name itself.
    """

    params: tuple[Param, ...]
    target: str | None = None

    def __post_init__(self) -> None:
        seen_optional = False
        for param in self.params:
            if param.default is None and seen_optional:
                raise ValueError(f"required parameter {param.name!r} follows an optional one")
            seen_optional = seen_optional or param.default is not None

    def bind(self, method: str, args: Sequence[Any]) -> list[Any]:
        """
        Check C{args} against the parameters and return the values to pass on.

        @param method: the XML-RPC method name, for messages.
        @param args: the decoded XML-RPC parameters.
        @raise GeniError: MISSINGARGS if a required argument is missing,
            BADARGS if there are too many or one has the wrong type.
        """
        if len(args) > len(self.params):
            raise GeniError(
                GeniCode.BADARGS,
                f"{method} takes at most {len(self.params)} arguments ({self.usage(method)}), got {len(args)}",
            )
        bound: list[Any] = []
        for index, param in enumerate(self.params):
            if index < len(args):
                bound.append(param.check(param.name, args[index]))
            elif param.default is not None:
                bound.append(param.default())
            else:
                missing = ", ".join(p.name for p in self.params[index:] if p.default is None)
                raise GeniError(GeniCode.MISSINGARGS, f"{method} is missing arguments: {missing} ({self.usage(method)})")
        return bound

    def presented(self, bound: Sequence[Any]) -> tuple[list[Any], list[Any]]:
        """
        Split bound values into the caller's credentials and the rest.

        @param bound: what L{bind} returned.
        @return: the credentials (empty when the method takes none) and
            the other values in order.
        """
        credentials: list[Any] = []
        rest: list[Any] = []
        for param, value in zip(self.params, bound):
            if param.presented:
                credentials.extend(value)
            else:
                rest.append(value)
        return credentials, rest

    def usage(self, method: str) -> str:
        """Return C{Method(a, b, [c])} for messages."""
        names = [p.name if p.default is None else f"[{p.name}]" for p in self.params]
        return f"{method}({', '.join(names)})"


URNS = Param("urns", string_list)
CREDENTIALS = Param("credentials", credential_list, presented=True)
OPTIONS = Param("options", struct)
SLICE_URN = Param("slice_urn", string)

API_V3_SIGNATURES: Mapping[str, Signature] = MappingProxyType(
    {
        "GetVersion": Signature((Param("options", struct, default=dict),)),
        "ListResources": Signature((CREDENTIALS, OPTIONS)),
        "Describe": Signature((URNS, CREDENTIALS, OPTIONS)),
        "Allocate": Signature((SLICE_URN, CREDENTIALS, Param("rspec", string), OPTIONS)),
        "Renew": Signature((URNS, CREDENTIALS, Param("expiration_time", time_string), OPTIONS)),
        "Provision": Signature((URNS, CREDENTIALS, OPTIONS)),
        "Status": Signature((URNS, CREDENTIALS, OPTIONS)),
        "PerformOperationalAction": Signature((URNS, CREDENTIALS, Param("action", string), OPTIONS)),
        "Delete": Signature((URNS, CREDENTIALS, OPTIONS)),
        "Shutdown": Signature((SLICE_URN, CREDENTIALS, OPTIONS)),
    }
)
"""The ten GENI AM API v3 methods; each is served by the API attribute of the same name."""


def struct_list(name: str, value: Any) -> list[dict[str, Any]]:
    """Accept an array whose every element is a struct."""
    if not isinstance(value, list):
        raise _bad(name, "an array of structs", value)
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise _bad(f"{name}[{index}]", "a struct", item)
    return value


TRANSACTION_SIGNATURES: Mapping[str, Signature] = MappingProxyType(
    {
        "BeginTransaction": Signature((SLICE_URN, CREDENTIALS, Param("rspec", string), Param("users", struct_list), OPTIONS)),
        "UpdateTransaction": Signature((SLICE_URN, CREDENTIALS, Param("rspec", string), Param("users", struct_list), OPTIONS)),
        "CommitTransaction": Signature((SLICE_URN, CREDENTIALS, OPTIONS)),
        "AbortTransaction": Signature((SLICE_URN, CREDENTIALS, OPTIONS)),
    }
)
"""The four methods of the PG-A transactions change set, served beside L{API_V3_SIGNATURES}."""
