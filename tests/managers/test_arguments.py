"""
Tests for L{geniam.managers.arguments} and L{geniam.config}.
"""

from __future__ import annotations

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from geniam.config import ServerOptions, duration
from geniam.errors import GeniCode, GeniError
from geniam.managers.arguments import (
    GENI_RSPEC_V3,
    flag,
    optional_time,
    rspec_version,
    target_urns,
    users_option,
)

SLICE = "urn:publicid:IDN+geni:gpo:gcf+slice+fixture"
SLIVER = "urn:publicid:IDN+geni:gpo:gcf:am1+sliver+abc"
KEY = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 alice"


class ArgumentTests(SynchronousTestCase):
    """The AM API v3 arguments."""

    def assertCode(self, code: GeniCode, f, *args) -> GeniError:  # type: ignore[no-untyped-def]
        with self.assertRaises(GeniError) as cm:
            f(*args)
        self.assertEqual(cm.exception.code, code, cm.exception.output)
        return cm.exception

    def test_flags(self) -> None:
        """Booleans are read leniently; anything else is BADARGS."""
        self.assertTrue(flag({"x": 1}, "x"))
        self.assertFalse(flag({"x": "false"}, "x"))
        self.assertTrue(flag({}, "x", True))
        self.assertCode(GeniCode.BADARGS, flag, {"x": [1]}, "x")

    def test_rspec_version(self) -> None:
        """Missing is BADARGS, unsupported BADVERSION, case-insensitive match otherwise."""
        supported = [GENI_RSPEC_V3]
        self.assertEqual(rspec_version({"geni_rspec_version": {"type": "geni", "version": 3}}, supported), GENI_RSPEC_V3)
        self.assertCode(GeniCode.BADARGS, rspec_version, {}, supported)
        self.assertCode(GeniCode.BADARGS, rspec_version, {"geni_rspec_version": "GENI 3"}, supported)
        self.assertCode(GeniCode.BADVERSION, rspec_version, {"geni_rspec_version": {"type": "ProtoGENI", "version": "2"}}, supported)

    def test_targets(self) -> None:
        """One slice, or slivers; never a mix, two slices or other types."""
        self.assertEqual(target_urns([SLICE]).slice_urn, SLICE)
        self.assertEqual(target_urns([SLIVER, SLIVER]).sliver_urns, (SLIVER,))
        self.assertCode(GeniCode.BADARGS, target_urns, [SLICE, SLIVER])
        self.assertCode(GeniCode.BADARGS, target_urns, [SLICE, SLICE.replace("fixture", "other")])
        self.assertCode(GeniCode.BADARGS, target_urns, ["urn:publicid:IDN+a+node+n1"])
        self.assertCode(GeniCode.BADARGS, target_urns, [])
        self.assertCode(GeniCode.BADARGS, target_urns, SLICE)

    def test_users(self) -> None:
        """geni_users entries are validated, keys included."""
        users = users_option({"geni_users": [{"urn": "urn:publicid:IDN+geni:gpo:gcf+user+alice", "keys": [KEY]}]})
        assert users is not None
        self.assertEqual(users[0].keys, (KEY,))
        self.assertIsNone(users_option({}))
        self.assertCode(GeniCode.BADARGS, users_option, {"geni_users": [{"urn": SLICE, "keys": []}]})
        self.assertCode(GeniCode.BADARGS, users_option, {"geni_users": [{"urn": "urn:publicid:IDN+a+user+b", "keys": ["x\ny"]}]})

    def test_time_option(self) -> None:
        """Time options are RFC 3339 or absent."""
        self.assertIsNone(optional_time({}, "geni_end_time"))
        self.assertEqual(optional_time({"geni_end_time": "1970-01-01T00:01:00Z"}, "geni_end_time"), 60)
        self.assertCode(GeniCode.BADARGS, optional_time, {"geni_end_time": "soon"}, "geni_end_time")


class ConfigTests(SynchronousTestCase):
    """Daemon options with a TOML file beneath the flags."""

    class Options(ServerOptions):
        role = "am"
        optParameters = [["allocation-ttl", None, 172800.0, "ttl", duration]]

    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_file_under_flags(self) -> None:
        """File values apply, the role's table overrides top level, flags override both."""
        path = self.write('port = 9000\ninterface = "0.0.0.0"\n[am]\nallocation_ttl = "2h"\n')
        options = self.Options()
        options.parseOptions(["--config", path, "--interface", "127.0.0.2"])
        self.assertEqual((options["port"], options["interface"], options["allocation-ttl"]), (9000, "127.0.0.2", 7200.0))

    def test_defaults(self) -> None:
        """Without a file the role's default port is used."""
        options = self.Options()
        options.parseOptions([])
        self.assertEqual(options["port"], 8001)

    def test_bad_file(self) -> None:
        """Unknown settings, bad values and bad TOML are usage errors."""
        for text in ("nonsense = 1\n", "port = 99999\n", "port = [\n"):
            with self.assertRaises(usage.UsageError):
                self.Options().parseOptions(["--config", self.write(text)])

    def test_pairs(self) -> None:
        """A certificate without its key is refused."""
        with self.assertRaises(usage.UsageError):
            self.Options().parseOptions(["--certificate", __file__])
