"""
Tests for L{geniam.agent.options}: flags, the TOML file and their merging.
"""

from __future__ import annotations

import os

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from geniam.gateway.inventory import DEFAULT_INVENTORY
from geniam.agent.options import DEFAULT_PORT, AgentOptions
from tests.fixturepaths import GCF

FIXTURES = os.environ.get("GENIAM_FIXTURES", str(GCF))
AM1 = "urn:publicid:IDN+geni:gpo:gcf:am1+authority+am"
AM2 = "urn:publicid:IDN+geni:gpo:gcf:am2+authority+am"


class OptionsTests(SynchronousTestCase):
    """Parsing the agent's options."""

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.cert = os.path.join(self.dir, "agent-cert.pem")
        self.key = os.path.join(self.dir, "agent-key.pem")
        for path in (self.cert, self.key):
            with open(path, "w") as handle:
                handle.write("-")
        self.roots = os.path.join(self.dir, "roots")
        os.makedirs(self.roots)

    def parse(self, *argv: str) -> AgentOptions:
        options = AgentOptions()
        options.parseOptions(list(argv))
        return options

    def config(self, text: str) -> str:
        path = os.path.join(self.dir, "agent.toml")
        with open(path, "w") as handle:
            handle.write(text)
        return path

    def test_defaults(self) -> None:
        """With no flags: the simulated back end, the default port, loopback, the development trust domain."""
        settings = self.parse().settings
        self.assertEqual(settings.backend, "simulated")
        self.assertEqual(settings.port, DEFAULT_PORT)
        self.assertEqual(settings.interface, "127.0.0.1")
        self.assertIsNone(settings.certificate)
        self.assertEqual(settings.allow, ())
        self.assertEqual(settings.inventory, DEFAULT_INVENTORY)
        self.assertIsNone(settings.command)

    def test_flags(self) -> None:
        """Every flag lands in the settings, --allow repeatable."""
        settings = self.parse(
            "--port", "9000",
            "--interface", "0.0.0.0",
            "--data-dir", self.dir,
            "--trust-roots", self.roots,
            "--certificate", self.cert,
            "--private-key", self.key,
            "--backend", "command",
            "--allow", AM1,
            "--allow", AM2,
            "--secret-file", self.cert,
        ).settings
        self.assertEqual(
            (settings.port, settings.interface, settings.data_dir, settings.trust_roots, settings.certificate, settings.private_key, settings.backend),
            (9000, "0.0.0.0", self.dir, self.roots, self.cert, self.key, "command"),
        )
        self.assertEqual(settings.allow, (AM1, AM2))
        self.assertEqual(settings.secret_file, self.cert)

    def test_bad_flags(self) -> None:
        """Bad values are usage errors with clear messages."""
        for argv, message in (
            (["--backend", "shell"], "--backend must be one of simulated, command"),
            (["--allow", "alice"], "--allow: not a GENI URN"),
            (["--certificate", self.cert], "go together"),
            (["--secret-file", "/nonexistent"], "no such file"),
        ):
            error = self.assertRaises(usage.UsageError, self.parse, *argv)
            self.assertIn(message, str(error))

    def test_config_file(self) -> None:
        """The file sets options, [agent] wins over top level, other roles' tables are ignored."""
        path = self.config(
            f"""
port = 7000
interface = "0.0.0.0"
backend = "simulated"

[am]
database = "am.sqlite"

[agent]
port = 7001
backend = "command"
data_dir = "{self.dir}"
allow = ["{AM1}"]

[agent.inventory]
switches = ["0000000000000001", "0000000000000002"]
links = ["00:00:00:00:00:00:00:01:1-00:00:00:00:00:00:00:02:1"]

[agent.command]
bridge = "br-island"
authorized-keys = "keys/authorized_keys"
vlan-add = [["ovs-ofctl", "add-flow", "{{bridge}}", "{{flow_to_island}}"]]
"""
        )
        settings = self.parse("--config", path).settings
        self.assertEqual((settings.port, settings.interface, settings.backend), (7001, "0.0.0.0", "command"))
        self.assertEqual(settings.allow, (AM1,))
        self.assertEqual(settings.inventory.switches, ("00:00:00:00:00:00:00:01", "00:00:00:00:00:00:00:02"))
        assert settings.command is not None
        self.assertEqual(settings.command.bridge, "br-island")
        self.assertEqual(settings.command.authorized_keys, os.path.join(self.dir, "keys", "authorized_keys"))
        self.assertEqual(len(settings.command.vlan_add), 1)

    def test_flags_override_file(self) -> None:
        """A flag given on the command line wins over the file."""
        path = self.config(f'port = 7000\nbackend = "command"\nallow = ["{AM1}"]\n')
        settings = self.parse("--config", path, "--port", "7100", "--backend", "simulated", "--allow", AM2).settings
        self.assertEqual((settings.port, settings.backend, settings.allow), (7100, "simulated", (AM2,)))

    def test_bad_file(self) -> None:
        """Unknown settings, bad tables and bad command templates are usage errors."""
        for text, message in (
            ("colour = 1\n", "unknown setting 'colour'"),
            ("port = [\n", "--config"),
            ("[inventory]\nswitches = ['x']\n", "not a datapath id"),
            ("[inventory]\nhosts = []\n", "only switches and links"),
            ("inventory = 3\n", "must be a table"),
            ("[command]\nproxy = ['redir', 'x{controller}']\n", "placeholder must be a whole element"),
            ("[agent]\nwhatever = {a = 1}\n", "unknown setting"),
            ("allow = 'x'\n", "allow must be a list"),
            ("port = 'many'\n", "port must be a number"),
        ):
            error = self.assertRaises(usage.UsageError, self.parse, "--config", self.config(text))
            self.assertIn(message, str(error), text)

    def test_help_names_flags(self) -> None:
        """The usage text lists the agent's flags."""
        text = str(AgentOptions())
        for flag in ("--port", "--interface", "--data-dir", "--trust-roots", "--certificate", "--private-key", "--backend", "--config", "--allow", "--secret-file"):
            self.assertIn(flag, text)
