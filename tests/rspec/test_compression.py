"""
Tests for L{geniam.rspec.compression}: the C{geni_compressed} codec.
"""

from __future__ import annotations

import base64
import zlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.rspec.compression import compress_rspec, decompress_rspec, looks_compressed, maybe_decompress
from geniam.rspec.parser import ParseLimits


def _bomb(size: int) -> str:
    """base64 of zlib of C{size} zero bytes, compressed piecewise."""
    packer = zlib.compressobj(9)
    chunk = b"\0" * (1 << 20)
    parts = [packer.compress(chunk) for _ in range(size // len(chunk))]
    parts.append(packer.flush())
    return base64.b64encode(b"".join(parts)).decode("ascii")


class CodecTests(SynchronousTestCase):
    """Round trips and refusals of the codec."""

    def test_wire_format(self) -> None:
        """The encoding is base64 of zlib (RFC 1950) of UTF-8, as other GENI tools read it."""
        encoded = compress_rspec("<rspec>é</rspec>")
        self.assertEqual(zlib.decompress(base64.b64decode(encoded)).decode("utf-8"), "<rspec>é</rspec>")

    def test_decodes_foreign_encoding(self) -> None:
        """A payload made by another implementation, with line breaks, decodes."""
        encoded = base64.encodebytes(zlib.compress(b"<rspec type='advertisement'/>")).decode("ascii")
        self.assertIn("\n", encoded)
        self.assertEqual(decompress_rspec(encoded), "<rspec type='advertisement'/>")

    def test_decompression_bomb(self) -> None:
        """64 MiB of zeros compressed to a few kB is refused as TOOBIG without inflating it all."""
        bomb = _bomb(64 << 20)
        self.assertLess(len(bomb), 200_000)
        error = self.assertRaises(GeniError, decompress_rspec, bomb)
        self.assertEqual(error.code, GeniCode.TOOBIG)

    def test_limit_is_configurable(self) -> None:
        """The expansion bound is the caller's C{max_bytes}."""
        encoded = compress_rspec("x" * 1000)
        self.assertRaises(GeniError, decompress_rspec, encoded, ParseLimits(max_bytes=999))
        self.assertEqual(decompress_rspec(encoded, ParseLimits(max_bytes=1000)), "x" * 1000)

    def test_oversized_input(self) -> None:
        """Base64 text longer than twice the limit is TOOBIG before decoding."""
        error = self.assertRaises(GeniError, decompress_rspec, "A" * 2001, ParseLimits(max_bytes=1000))
        self.assertEqual(error.code, GeniCode.TOOBIG)

    def test_not_base64(self) -> None:
        """Invalid base64 is BADARGS."""
        error = self.assertRaises(GeniError, decompress_rspec, "not*base64!")
        self.assertEqual(error.code, GeniCode.BADARGS)

    def test_not_zlib(self) -> None:
        """base64 of something other than zlib is BADARGS."""
        error = self.assertRaises(GeniError, decompress_rspec, base64.b64encode(b"plain text").decode())
        self.assertEqual(error.code, GeniCode.BADARGS)

    def test_truncated(self) -> None:
        """A truncated zlib stream is BADARGS."""
        packed = zlib.compress(b"<rspec/>" * 100)[:-10]
        error = self.assertRaises(GeniError, decompress_rspec, base64.b64encode(packed).decode())
        self.assertEqual(error.code, GeniCode.BADARGS)
        self.assertIn("truncated", error.output)

    def test_not_utf8(self) -> None:
        """Decompressed bytes that are not UTF-8 are BADARGS."""
        error = self.assertRaises(GeniError, decompress_rspec, base64.b64encode(zlib.compress(b"\xff\xfe\xfa")))
        self.assertEqual(error.code, GeniCode.BADARGS)

    def test_not_a_string(self) -> None:
        """A non-string is BADARGS."""
        error = self.assertRaises(GeniError, decompress_rspec, 12)  # type: ignore[arg-type]
        self.assertEqual(error.code, GeniCode.BADARGS)

    def test_looks_compressed(self) -> None:
        """XML is recognised by its leading '<'; base64 never starts so."""
        self.assertFalse(looks_compressed("  \n<rspec/>"))
        self.assertFalse(looks_compressed(b"<rspec/>"))
        self.assertTrue(looks_compressed(compress_rspec("<rspec/>")))
        self.assertFalse(looks_compressed(""))

    def test_maybe_decompress(self) -> None:
        """Plain XML passes unchanged; compressed XML is decoded."""
        self.assertEqual(maybe_decompress("<rspec/>"), "<rspec/>")
        self.assertEqual(maybe_decompress(compress_rspec("<rspec/>")), "<rspec/>")

    @given(st.text(max_size=2000))
    def test_round_trip(self, text: str) -> None:
        """Any text survives compress then decompress."""
        self.assertEqual(decompress_rspec(compress_rspec(text)), text)
