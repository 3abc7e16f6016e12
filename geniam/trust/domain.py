# -*- test-case-name: tests.trust.test_domain -*-
"""
A development trust domain kept in a folder.

An aggregate started without configured trust creates one; C{geniam
authority init|user} manage one by hand. The layout::

    domain.json                 authority string and format version
    roots/ca-cert.pem           the CA certificate alone: the trust-roots directory to configure
    ca/ca-cert.pem, ca-key.pem  the self-signed slice authority (keys are mode 0600)
    users/<name>-cert.pem       user certificates (with the CA as chain) and -key.pem
    aggregates/<name>-cert.pem  aggregate certificates, URN <authority>:<name>+authority+am
    tools/<name>-cert.pem       tool certificates, URN <authority>+tool+<name>
    credentials/                signed user credentials (written by the credential commands)
    slices/                     slice certificates and credentials (likewise)

Nothing is ever overwritten: adding a name that exists is an error, and
lookups read what is there. The methods do blocking file I/O and generate
RSA keys; call them at start-up or from a command line, not from the reactor
thread while it serves requests.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import IReactorTime

from geniam.errors import GeniCode, GeniError
from geniam.trust.certs import DEFAULT_AUTHORITY_LIFETIME, DEFAULT_LIFETIME, make_authority, make_identity
from geniam.trust.gid import TrustRoots
from geniam.trust.identity import Identity
from geniam.urn import parse_urn

FORMAT = "geniam-trust-domain"
VERSION = 1
DEFAULT_AUTHORITY = "geniam:dev"
"""The authority string of a domain created without one."""

_METADATA = "domain.json"
_USER_NAME = re.compile(r"^[a-zA-Z][A-Za-z0-9_]{0,7}$")
_AGGREGATE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-]{0,62}$")
_TOOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
_KINDS = ("users", "aggregates", "tools")


def _default_reactor(reactor: IReactorTime | None) -> IReactorTime:
    if reactor is not None:
        return reactor
    from twisted.internet import reactor as global_reactor

    return global_reactor  # type: ignore[return-value]


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create C{path} with C{data}; refuse if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise GeniError(GeniCode.ALREADYEXISTS, f"{path} already exists; not overwriting it") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


class TrustDomain:
    """
    A self-contained development trust domain: one CA, its users, aggregates and tools.

    @ivar path: the folder.
    @ivar authority: the authority string, e.g. C{geniam:dev}.
    """

    def __init__(self, path: Path, authority: str, reactor: IReactorTime | None = None) -> None:
        """Use L{create} or L{open}."""
        self.path = path
        self.authority = authority
        self._reactor = reactor
        self._cache: dict[tuple[str, str], Identity] = {}

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        authority: str = DEFAULT_AUTHORITY,
        now: float | None = None,
        reactor: IReactorTime | None = None,
        lifetime_seconds: float = DEFAULT_AUTHORITY_LIFETIME,
        key_size: int = 2048,
    ) -> TrustDomain:
        """
        Create a domain with a new CA C{urn:publicid:IDN+<authority>+authority+sa}.

        @param path: a folder that does not exist yet or is empty.
        @param now: the start of the CA's validity, POSIX seconds; C{reactor.seconds()} if C{None}.
        @param reactor: the time source of later additions; the global reactor if C{None}.
        @raise GeniError: ALREADYEXISTS if the folder is not empty; BADARGS for a bad authority.
        """
        folder = Path(path)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise GeniError(GeniCode.ALREADYEXISTS, f"{folder} exists and is not empty; not creating a trust domain there")
        if now is None:
            now = _default_reactor(reactor).seconds()
        ca = make_authority(authority, now=now, lifetime_seconds=lifetime_seconds, key_size=key_size)
        folder.mkdir(parents=True, exist_ok=True)
        for sub in ("roots", "ca", *_KINDS, "credentials", "slices"):
            (folder / sub).mkdir(mode=0o700 if sub in ("ca", *_KINDS) else 0o755)
        _write_new(folder / "ca" / "ca-key.pem", ca.private_key_pem(), 0o600)
        _write_new(folder / "ca" / "ca-cert.pem", ca.certificate_pem(), 0o644)
        _write_new(folder / "roots" / "ca-cert.pem", ca.certificate_pem(with_chain=False), 0o644)
        metadata = {"format": FORMAT, "version": VERSION, "authority": authority, "ca_urn": ca.urn}
        _write_new(folder / _METADATA, (json.dumps(metadata, indent=2) + "\n").encode(), 0o644)
        domain = cls(folder, authority, reactor)
        domain._cache[("ca", "ca")] = ca
        return domain

    @classmethod
    def open(cls, path: str | os.PathLike[str], reactor: IReactorTime | None = None) -> TrustDomain:
        """
        Open an existing domain.

        @param reactor: the time source of additions; the global reactor if C{None}.
        @raise GeniError: SEARCHFAILED if there is no domain at C{path}, ERROR if it is damaged.
        """
        folder = Path(path)
        try:
            metadata: Any = json.loads((folder / _METADATA).read_text("utf-8"))
        except FileNotFoundError:
            raise GeniError(GeniCode.SEARCHFAILED, f"no trust domain at {folder} (no {_METADATA})") from None
        except (OSError, ValueError) as e:
            raise GeniError(GeniCode.ERROR, f"cannot read trust domain {folder}: {e}") from None
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
            raise GeniError(GeniCode.ERROR, f"{folder / _METADATA} does not describe a geniam trust domain")
        if metadata.get("version") != VERSION:
            raise GeniError(GeniCode.ERROR, f"unsupported trust domain version {metadata.get('version')!r} in {folder}")
        authority = metadata.get("authority")
        if not isinstance(authority, str):
            raise GeniError(GeniCode.ERROR, f"{folder / _METADATA} names no authority")
        return cls(folder, authority, reactor)

    @classmethod
    def open_or_create(
        cls,
        path: str | os.PathLike[str],
        authority: str = DEFAULT_AUTHORITY,
        reactor: IReactorTime | None = None,
    ) -> TrustDomain:
        """Open the domain at C{path}, creating it (with C{authority}) if the folder is absent or empty."""
        folder = Path(path)
        if (folder / _METADATA).exists():
            return cls.open(folder, reactor)
        return cls.create(folder, authority, reactor=reactor)

    @property
    def roots_dir(self) -> Path:
        """The folder holding only the CA certificate: configure it as the trust roots."""
        return self.path / "roots"

    @property
    def credentials_dir(self) -> Path:
        """The folder for signed user credentials (C{<user>-usercred.xml} by convention)."""
        return self.path / "credentials"

    @property
    def slices_dir(self) -> Path:
        """The folder for slice certificates and slice credentials."""
        return self.path / "slices"

    @property
    def ca_urn(self) -> str:
        """The URN of the domain's CA."""
        return f"urn:publicid:IDN+{self.authority}+authority+sa"

    @property
    def ca(self) -> Identity:
        """The CA's identity (certificate and key)."""
        return self._load("ca", "ca")

    def roots(self) -> TrustRoots:
        """The domain's trust roots (its CA)."""
        return TrustRoots.from_directory(self.roots_dir)

    def user_urn(self, name: str) -> str:
        """The URN of user C{name}: C{urn:publicid:IDN+<authority>+user+<name>}."""
        return f"urn:publicid:IDN+{self.authority}+user+{name}"

    def aggregate_urn(self, name: str) -> str:
        """The URN of aggregate C{name}: C{urn:publicid:IDN+<authority>:<name>+authority+am}."""
        return f"urn:publicid:IDN+{self.authority}:{name}+authority+am"

    def tool_urn(self, name: str) -> str:
        """The URN of tool C{name}: C{urn:publicid:IDN+<authority>+tool+<name>}."""
        return f"urn:publicid:IDN+{self.authority}+tool+{name}"

    def cert_path(self, kind: str, name: str) -> Path:
        """The certificate file of C{name} among C{kind} (C{users}, C{aggregates}, C{tools})."""
        self._check_name(kind, name)
        return self.path / kind / f"{name}-cert.pem"

    def key_path(self, kind: str, name: str) -> Path:
        """The private key file of C{name} among C{kind}."""
        self._check_name(kind, name)
        return self.path / kind / f"{name}-key.pem"

    def add_user(
        self, name: str, email: str | None = None, now: float | None = None, lifetime_seconds: float = DEFAULT_LIFETIME
    ) -> Identity:
        """
        Issue a user certificate and key.

        @raise GeniError: ALREADYEXISTS if the user exists; BADARGS for a bad name
            (a letter, then up to 7 letters, digits or underscores).
        """
        return self._add("users", name, self.user_urn(name), email, False, now, lifetime_seconds)

    def add_aggregate(self, name: str, now: float | None = None, lifetime_seconds: float = DEFAULT_AUTHORITY_LIFETIME) -> Identity:
        """
        Issue an aggregate certificate (C{CA:TRUE}, as C{gen-certs --am} makes them) and key.

        @raise GeniError: ALREADYEXISTS if the aggregate exists; BADARGS for a bad name.
        """
        return self._add("aggregates", name, self.aggregate_urn(name), None, True, now, lifetime_seconds)

    def add_tool(self, name: str, now: float | None = None, lifetime_seconds: float = DEFAULT_LIFETIME) -> Identity:
        """
        Issue a tool certificate (for speaks-for) and key.

        @raise GeniError: ALREADYEXISTS if the tool exists; BADARGS for a bad name.
        """
        return self._add("tools", name, self.tool_urn(name), None, False, now, lifetime_seconds)

    def user(self, name: str) -> Identity:
        """
        The identity of user C{name}.

        @raise GeniError: SEARCHFAILED if there is no such user.
        """
        return self._load("users", name)

    def aggregate(self, name: str) -> Identity:
        """
        The identity of aggregate C{name}.

        @raise GeniError: SEARCHFAILED if there is no such aggregate.
        """
        return self._load("aggregates", name)

    def tool(self, name: str) -> Identity:
        """
        The identity of tool C{name}.

        @raise GeniError: SEARCHFAILED if there is no such tool.
        """
        return self._load("tools", name)

    def ensure_user(self, name: str, email: str | None = None) -> Identity:
        """The identity of user C{name}, issued first if absent."""
        return self.user(name) if self.cert_path("users", name).exists() else self.add_user(name, email)

    def ensure_aggregate(self, name: str) -> Identity:
        """The identity of aggregate C{name}, issued first if absent."""
        return self.aggregate(name) if self.cert_path("aggregates", name).exists() else self.add_aggregate(name)

    def users(self) -> list[str]:
        """The names of the domain's users, sorted."""
        return self._names("users")

    def aggregates(self) -> list[str]:
        """The names of the domain's aggregates, sorted."""
        return self._names("aggregates")

    def tools(self) -> list[str]:
        """The names of the domain's tools, sorted."""
        return self._names("tools")

    def _names(self, kind: str) -> list[str]:
        try:
            files = os.listdir(self.path / kind)
        except FileNotFoundError:
            return []
        return sorted(f[: -len("-cert.pem")] for f in files if f.endswith("-cert.pem"))

    def _check_name(self, kind: str, name: str) -> None:
        patterns = {"users": _USER_NAME, "aggregates": _AGGREGATE_NAME, "tools": _TOOL_NAME}
        if kind == "ca" and name == "ca":
            return
        pattern = patterns.get(kind)
        if pattern is None:
            raise GeniError(GeniCode.BADARGS, f"unknown kind of identity {kind!r}")
        if not isinstance(name, str) or not pattern.match(name):
            raise GeniError(GeniCode.BADARGS, f"invalid {kind[:-1]} name {str(name)[:80]!r}")

    def _add(
        self,
        kind: str,
        name: str,
        urn: str,
        email: str | None,
        is_authority: bool,
        now: float | None,
        lifetime_seconds: float,
    ) -> Identity:
        self._check_name(kind, name)
        parse_urn(urn)
        cert_path, key_path = self.cert_path(kind, name), self.key_path(kind, name)
        if cert_path.exists() or key_path.exists():
            raise GeniError(GeniCode.ALREADYEXISTS, f"{kind[:-1]} {name!r} already exists in {self.path}")
        if now is None:
            now = _default_reactor(self._reactor).seconds()
        identity = make_identity(
            self.ca, urn, email=email, is_authority=is_authority, lifetime_seconds=lifetime_seconds, now=now
        )
        (self.path / kind).mkdir(mode=0o700, exist_ok=True)
        _write_new(key_path, identity.private_key_pem(), 0o600)
        try:
            _write_new(cert_path, identity.certificate_pem(), 0o644)
        except BaseException:
            key_path.unlink(missing_ok=True)
            raise
        self._cache[(kind, name)] = identity
        return identity

    def _load(self, kind: str, name: str) -> Identity:
        cached = self._cache.get((kind, name))
        if cached is not None:
            return cached
        if kind == "ca":
            cert_path, key_path = self.path / "ca" / "ca-cert.pem", self.path / "ca" / "ca-key.pem"
        else:
            cert_path, key_path = self.cert_path(kind, name), self.key_path(kind, name)
        if not cert_path.exists():
            raise GeniError(GeniCode.SEARCHFAILED, f"no {kind[:-1] if kind != 'ca' else 'CA'} {name!r} in trust domain {self.path}")
        identity = Identity.from_files(cert_path, key_path)
        self._cache[(kind, name)] = identity
        return identity

    def __repr__(self) -> str:
        return f"<TrustDomain {self.authority} at {self.path}>"
