"""
Tests for the shared foundation: GENI structs, RFC 3339 time, URNs,
gateway parameters and the command dispatcher.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from geniam.cli.main import SUBCOMMANDS, main
from geniam.errors import GeniCode, GeniError, error_struct, success_struct
from geniam.gatewayconfig import (
    UNTAGGED,
    parse_controller,
    validate_ssh_keys,
    validate_vlan_map,
)
from geniam.gateway.config import GatewayConfig
from geniam.timeutil import format_time, parse_time
from geniam.urn import parse_urn, same_urn
from tests.fixturepaths import REPO_ROOT

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOq5P0wVtV0bWbFQqg8Xn1K1JmHhJ7m1fQ1b3c7m5a1b alice@laptop"


class StructTests(SynchronousTestCase):
    """The GENI return struct."""

    def test_success(self) -> None:
        """A success struct carries geni_code 0 and the value."""
        struct = success_struct(["x"])
        self.assertEqual(struct["code"]["geni_code"], 0)
        self.assertEqual(struct["value"], ["x"])

    def test_error_has_no_nil(self) -> None:
        """An error without a value still has a value member that is not None."""
        struct = GeniError(GeniCode.SEARCHFAILED, "no such sliver").as_struct()
        self.assertEqual(struct["code"]["geni_code"], 12)
        self.assertEqual(struct["output"], "no such sliver")
        self.assertIsNotNone(struct["value"])
        self.assertEqual(error_struct(GeniCode.BADARGS, "x", {"a": 1})["value"], {"a": 1})


class TimeTests(SynchronousTestCase):
    """RFC 3339 parsing and formatting."""

    def test_zones(self) -> None:
        """Zulu, offsets and zone-less (UTC) times parse to the same instant."""
        base = parse_time("2026-11-22T12:00:00Z")
        self.assertEqual(parse_time("2026-11-22T13:30:00+01:30"), base)
        self.assertEqual(parse_time("2026-11-22T12:00:00"), base)
        self.assertEqual(parse_time("2026-11-22 12:00:00.500Z"), base + 0.5)
        self.assertEqual(format_time(base), "2026-11-22T12:00:00Z")

    def test_garbage(self) -> None:
        """Non-times and impossible dates are BADARGS."""
        for bad in ("tomorrow", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", 5, ""):
            with self.assertRaises(GeniError) as cm:
                parse_time(bad)  # type: ignore[arg-type]
            self.assertEqual(cm.exception.code, GeniCode.BADARGS)

    @given(st.integers(min_value=0, max_value=4_000_000_000))
    def test_round_trip(self, seconds: int) -> None:
        """format_time and parse_time are inverse on whole seconds."""
        self.assertEqual(parse_time(format_time(seconds)), seconds)


class URNTests(SynchronousTestCase):
    """GENI URNs."""

    def test_parse(self) -> None:
        """The three parts are read and the normalised key ignores authority case."""
        urn = parse_urn("urn:publicid:IDN+geni:gpo:gcf+slice+Fixture")
        self.assertEqual((urn.authority, urn.type, urn.name), ("geni:gpo:gcf", "slice", "Fixture"))
        self.assertTrue(same_urn(str(urn), "urn:publicid:IDN+GENI:gpo:gcf+slice+fixture"))
        self.assertTrue(urn.is_within("geni:gpo"))
        self.assertFalse(urn.is_within("geni:gp"))

    def test_rejects(self) -> None:
        """Malformed URNs, bad slice names and wrong types are BADARGS."""
        for bad in (
            "urn:publicid:IDN+a+slice",
            "urn:x:y",
            "urn:publicid:IDN+a b+slice+x",
            "urn:publicid:IDN+a+slice+this-name-is-far-too-long",
            "urn:publicid:IDN+a+sliver+bad/name",
            None,
        ):
            with self.assertRaises(GeniError):
                parse_urn(bad)
        with self.assertRaises(GeniError):
            parse_urn("urn:publicid:IDN+a+user+bob", "slice")


class GatewayConfigTests(SynchronousTestCase):
    """Controller, VLAN and key validation shared by the AM and the agent."""

    def test_controller(self) -> None:
        """Hosts, IPv4 and bracketed IPv6 with a port are accepted."""
        self.assertEqual(parse_controller("192.168.100.1:6633"), ("192.168.100.1", 6633))
        self.assertEqual(parse_controller("ctl.example.org:6653"), ("ctl.example.org", 6653))
        self.assertEqual(parse_controller("[::1]:6633"), ("::1", 6633))

    def test_hostile_controllers(self) -> None:
        """Shell metacharacters, missing or out-of-range ports are refused."""
        for bad in ("1.2.3.4", "1.2.3.4:0", "1.2.3.4:70000", "a;rm -rf /:6633", "$(x):1", "999.1.1.1:6633",
                    "host:66a", "-oProxy=x:22", "", 6633, "[zz]:1"):
            with self.assertRaises(GeniError):
                parse_controller(bad)

    def test_vlans(self) -> None:
        """The seed's example map is accepted and normalised."""
        self.assertEqual(validate_vlan_map({"10": "0xffff", "30": "20", 40: 41}),
                         {"10": UNTAGGED, "30": "20", "40": "41"})
        for bad in ({"0": "1"}, {"4095": "1"}, {"1": "5000"}, {"1": "x"}, {"1": "0xffff", "2": "0xffff"},
                    {"1": "5", "2": "5"}, [1, 2], {"1": True}):
            with self.assertRaises(GeniError):
                validate_vlan_map(bad)

    def test_keys(self) -> None:
        """One-line OpenSSH keys pass; newlines and junk are refused."""
        self.assertEqual(validate_ssh_keys([KEY, KEY]), (KEY,))
        for bad in ([KEY + "\nssh-rsa AAAA x"], ["not a key"], "ssh-rsa AAAA", [5]):
            with self.assertRaises(GeniError):
                validate_ssh_keys(bad)

    def test_config_validated(self) -> None:
        """GatewayConfig.from_wire checks every field."""
        config = GatewayConfig((KEY,), "10.0.0.1:6633", {"10": "20"})
        self.assertEqual(GatewayConfig.from_wire(config.to_wire()), config)
        with self.assertRaises(GeniError):
            GatewayConfig.from_wire(GatewayConfig((), "bad", {}).to_wire())


class DispatcherTests(SynchronousTestCase):
    """The geniam command dispatcher."""

    def test_unknown_command(self) -> None:
        """An unknown command exits 2; help exits 0."""
        self.assertEqual(main(["no-such-command"]), 2)
        self.assertEqual(main(["--help"]), 0)

    def test_every_command_importable(self) -> None:
        """Every listed command names a module with a main function."""
        import importlib

        for name, (module, _) in SUBCOMMANDS.items():
            self.assertTrue(callable(importlib.import_module(module).main), name)

    def test_every_command_prints_geniams_version(self) -> None:
        """C{geniam COMMAND --version} prints geniam's version, not Twisted's, and exits 0, for every command."""
        import io
        import sys

        from geniam import __version__

        for name in SUBCOMMANDS:
            printed = io.StringIO()
            self.patch(sys, "stdout", printed)
            self.assertEqual(main([name, "--version"]), 0, name)
            self.assertEqual(printed.getvalue(), f"geniam {__version__}\n", name)


class TestLayoutTests(SynchronousTestCase):
    """A module's tests are found from its path."""

    def test_test_case_names_exist(self) -> None:
        """Every C{test-case-name} header of geniam's modules names test modules that exist."""
        missing = []
        for path in sorted((REPO_ROOT / "geniam").rglob("*.py")):
            first = path.read_text().split("\n", 1)[0]
            match = re.match(r"# -\*- test-case-name: (.*) -\*-", first)
            if match is None:
                continue
            for name in match.group(1).split(","):
                module = REPO_ROOT / (name.strip().replace(".", "/") + ".py")
                if not module.exists():
                    missing.append(f"{path.relative_to(REPO_ROOT)}: {name.strip()}")
        self.assertEqual(missing, [])

    def test_unit_tests_mirror_the_package(self) -> None:
        """Each test folder below C{tests/} but C{loopback} (real servers) is named after a package of geniam."""
        folders = {p.relative_to(REPO_ROOT / "tests") for p in (REPO_ROOT / "tests").rglob("__init__.py")}
        packages = {p.parent for p in folders if p.parent != Path(".")}
        for package in packages:
            if package.parts[0] == "loopback":
                continue
            self.assertTrue((REPO_ROOT / "geniam" / package / "__init__.py").exists(), str(package))
