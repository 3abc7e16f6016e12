# -*- test-case-name: tests.rspec.test_compression -*-
"""
The C{geni_compressed} codec: base64 of zlib (RFC 1950) of the UTF-8 XML.

Decompression is bounded, so a small payload cannot expand into gigabytes
(a decompression bomb): output beyond C{limits.max_bytes} is refused with
TOOBIG without being produced.
"""

from __future__ import annotations

import base64
import binascii
import zlib

from geniam.errors import GeniCode, GeniError
from geniam.rspec.parser import DEFAULT_LIMITS, ParseLimits

_WHITESPACE = bytes.maketrans(b"", b"")


def compress_rspec(text: str) -> str:
    """
    Encode an RSpec for a C{geni_compressed} reply.

    @param text: the XML document.
    @return: base64 text of the zlib-compressed UTF-8 document.
    """
    if not isinstance(text, str):
        raise TypeError(f"compress_rspec takes a str, got {type(text).__name__}")
    return base64.b64encode(zlib.compress(text.encode("utf-8"), 9)).decode("ascii")


def looks_compressed(value: str | bytes) -> bool:
    """
    Guess whether an RSpec value is compressed.

    An XML document starts with C{<} (after blanks); base64 never contains it.
    """
    head = value[:64].lstrip() if isinstance(value, (str, bytes)) else ""
    return bool(head) and head[:1] not in ("<", b"<")


def decompress_rspec(value: str | bytes, limits: ParseLimits = DEFAULT_LIMITS) -> str:
    """
    Decode a C{geni_compressed} RSpec.

    Line breaks and blanks in the base64 text are ignored.

    @param limits: C{limits.max_bytes} bounds both the base64 text (twice
        that) and the decompressed document.
    @return: the XML document.
    @raise GeniError: TOOBIG if the input or its expansion is over the
        limit; BADARGS if it is not base64 of zlib of UTF-8 text.
    """
    if isinstance(value, str):
        try:
            data = value.encode("ascii")
        except UnicodeEncodeError:
            raise GeniError(GeniCode.BADARGS, "compressed RSpec is not base64 text") from None
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    else:
        raise GeniError(GeniCode.BADARGS, f"compressed RSpec must be a string, got {type(value).__name__}")
    if len(data) > 2 * limits.max_bytes:
        raise GeniError(GeniCode.TOOBIG, f"compressed RSpec is larger than {2 * limits.max_bytes} bytes")
    data = data.translate(_WHITESPACE, b" \t\r\n")
    try:
        packed = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise GeniError(GeniCode.BADARGS, "compressed RSpec is not valid base64") from None
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(packed, limits.max_bytes + 1)
    except zlib.error as e:
        raise GeniError(GeniCode.BADARGS, f"compressed RSpec is not zlib data ({e})") from None
    if len(raw) > limits.max_bytes:
        raise GeniError(
            GeniCode.TOOBIG, f"compressed RSpec expands to more than {limits.max_bytes} bytes"
        )
    if not inflater.eof:
        raise GeniError(GeniCode.BADARGS, "compressed RSpec is truncated")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise GeniError(GeniCode.BADARGS, "compressed RSpec is not UTF-8 text") from None


def maybe_decompress(value: str | bytes, limits: ParseLimits = DEFAULT_LIMITS) -> str | bytes:
    """
    Return C{value} decompressed if L{looks_compressed} says so, else unchanged.

    @raise GeniError: as L{decompress_rspec}.
    """
    if looks_compressed(value):
        return decompress_rspec(value, limits)
    return value
