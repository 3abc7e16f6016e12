# -*- test-case-name: tests.trust.test_gid,tests.trust.test_hostile_chains -*-
"""
Building a certificate path from a leaf to a trust root, with bounded work.

A chain arrives from the caller (in a PEM text, a signature's KeyInfo or
a TLS handshake), so the search for a path through it must cost little
whatever the chain holds. Before searching, L{screen_pool} refuses a
chain that repeats a certificate's subject name and public key (the
same issuer twice) or holds more than L{MAX_SAME_SUBJECT} certificates of
one name; with those gone every certificate has at most one issuer per
key, so the search is close to a straight line. L{PathSearch} then
tries at most L{MAX_ISSUER_CHECKS} issuers, builds paths of at most
L{MAX_PATH_LENGTH} certificates, keeps at most L{MAX_REASONS} reasons for
its dead ends, and stops as soon as its L{Deadline} is abandoned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa

from geniam.errors import GeniCode, GeniError
from geniam.timeutil import format_time, from_datetime
from geniam.trust.x509fields import (
    authority_key_id,
    basic_constraints,
    describe,
    fingerprint,
    public_key_der,
    san_values,
    subject_key_id,
)
from geniam.urn import URN, parse_urn

MAX_PATH_LENGTH = 10
"""The most certificates a path from a leaf to a root may hold."""

MAX_POOL = 64
"""The most distinct chain and intermediate certificates one search considers."""

MAX_SAME_SUBJECT = 4
"""The most certificates of one chain that may share a subject name."""

MAX_ISSUER_CHECKS = 64
"""The most candidate issuers one search checks (each check verifies a signature)."""

MAX_REASONS = 8
"""The most distinct reasons for dead ends one search keeps."""


class Abandoned(Exception):
    """Verification work stopped because its L{Deadline} was abandoned; carries why."""


class Deadline:
    """
    Lets whoever waits for verification work abandon it from another thread.

    The work calls L{check} between steps; once L{abandon} was called (the
    caller's deadline passed, or the server is shutting down) the next
    check raises L{Abandoned}, so a worker thread is free again at once.
    (One attribute is written once and read by the worker: atomic under
    the interpreter lock, and cheaper than an event on the cached path.)
    """

    def __init__(self) -> None:
        self._reason: str | None = None

    def abandon(self, reason: str) -> None:
        """Make every later L{check} raise L{Abandoned} with C{reason} (the first reason given wins)."""
        if self._reason is None:
            self._reason = reason

    @property
    def abandoned(self) -> bool:
        """Whether L{abandon} was called."""
        return self._reason is not None

    def check(self) -> None:
        """@raise Abandoned: if L{abandon} was called."""
        if self._reason is not None:
            raise Abandoned(self._reason)


class PathRejected(Exception):
    """A chain, or one candidate path through it, failed; carries the code and reason."""

    def __init__(self, code: GeniCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _untrusted(reason: str) -> PathRejected:
    return PathRejected(GeniCode.CREDENTIAL_SIGNER_UNTRUSTED, reason)


def _parsed_urn(cert: x509.Certificate, malformed: Callable[[GeniError], PathRejected]) -> URN | None:
    """The certificate's URN, or C{None} if it has none; C{malformed(error)} is raised if it does not parse."""
    text = san_values(cert)[0]
    if text is None:
        return None
    try:
        return parse_urn(text)
    except GeniError as e:
        raise malformed(e) from None


def _verify_signature(cert: x509.Certificate, issuer: x509.Certificate) -> str | None:
    """Check that C{issuer}'s key signed C{cert}; return None or why not."""
    try:
        key = issuer.public_key()
        params = cert.signature_algorithm_parameters
        if isinstance(key, rsa.RSAPublicKey):
            algorithm = cert.signature_hash_algorithm
            if algorithm is None or not isinstance(params, (padding.PKCS1v15, padding.PSS)):
                return "signature algorithm does not match an RSA key"
            key.verify(cert.signature, cert.tbs_certificate_bytes, params, algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(params, ec.ECDSA):
                return "signature algorithm does not match an EC key"
            key.verify(cert.signature, cert.tbs_certificate_bytes, params)
        elif isinstance(key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        elif isinstance(key, dsa.DSAPublicKey):
            algorithm = cert.signature_hash_algorithm
            if algorithm is None:
                return "signature algorithm does not match a DSA key"
            key.verify(cert.signature, cert.tbs_certificate_bytes, algorithm)
        else:
            return f"unsupported issuer key type {type(key).__name__}"
    except InvalidSignature:
        return "signature does not verify"
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        return f"signature cannot be checked ({e})"
    return None


def check_validity(cert: x509.Certificate, at: float) -> None:
    """@raise PathRejected: if C{cert} is not valid at C{at}."""
    before = from_datetime(cert.not_valid_before_utc)
    after = from_datetime(cert.not_valid_after_utc)
    if at < before:
        raise PathRejected(
            GeniCode.CREDENTIAL_INVALID,
            f"{describe(cert)} is not valid before {format_time(before)} (now {format_time(at)})",
        )
    if at > after:
        raise PathRejected(
            GeniCode.CREDENTIAL_EXPIRED,
            f"{describe(cert)} expired at {format_time(after)} (now {format_time(at)})",
        )


def _check_issuer(
    cert: x509.Certificate, issuer: x509.Certificate, intermediates_below: int
) -> None:
    """
    Apply the structural checks for C{issuer} signing C{cert}.

    @param intermediates_below: how many CA certificates lie between C{issuer} and the leaf.
    """
    why = _verify_signature(cert, issuer)
    if why is not None:
        raise _untrusted(f"{describe(cert)}: {why} with the key of issuer {describe(issuer)}")
    constraints = basic_constraints(issuer)
    if constraints is None or not constraints.ca:
        raise _untrusted(f"issuer {describe(issuer)} of {describe(cert)} is not a CA (basicConstraints CA:TRUE missing)")
    if constraints.path_length is not None and intermediates_below > constraints.path_length:
        raise PathRejected(
            GeniCode.CREDENTIAL_SIGNER_UNTRUSTED,
            f"issuer {describe(issuer)} allows a path length of {constraints.path_length}, "
            f"but {intermediates_below} CA certificates follow it",
        )
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_cert_sign:
        raise _untrusted(f"issuer {describe(issuer)} may not sign certificates (keyUsage lacks keyCertSign)")
    issuer_urn = _parsed_urn(issuer, lambda e: _untrusted(f"issuer {describe(issuer)} has a malformed URN"))
    if issuer_urn is None:
        return
    if issuer_urn.type != "authority":
        raise _untrusted(f"issuer {describe(issuer)} is not an authority (URN type {issuer_urn.type!r})")
    subject_urn = _parsed_urn(cert, lambda e: PathRejected(GeniCode.CREDENTIAL_INVALID, f"{describe(cert)}: {e.output}"))
    if subject_urn is None:
        return
    if not subject_urn.is_within(issuer_urn.authority):
        raise PathRejected(
            GeniCode.CREDENTIAL_SIGNER_UNTRUSTED,
            f"issuer {describe(issuer)} has no namespace authority over {san_values(cert)[0]} "
            f"({issuer_urn.authority!r} does not prefix {subject_urn.authority!r})",
        )


def is_self_issued(cert: x509.Certificate) -> bool:
    """Whether the subject and issuer names are the same."""
    return cert.subject == cert.issuer



def screen_pool(
    leaf: x509.Certificate,
    offered: Iterable[x509.Certificate],
    roots: Mapping[bytes, x509.Certificate],
) -> list[x509.Certificate]:
    """
    The certificates of a chain that may serve as issuers, once the chain is found sound.

    Copies of the roots, of a root's name and key, and of the leaf are
    left out (the roots themselves are always candidates).

    @param roots: the trusted roots by fingerprint.
    @raise PathRejected: CREDENTIAL_INVALID if the chain holds more than
        L{MAX_POOL} certificates, two certificates with one subject name
        and one public key, or more than L{MAX_SAME_SUBJECT} of one name.
    """
    leaf_fingerprint = fingerprint(leaf)
    root_identities = {(c.subject.public_bytes(), public_key_der(c)) for c in roots.values()}
    pool: dict[bytes, x509.Certificate] = {}
    for cert in offered:
        if not isinstance(cert, x509.Certificate):
            raise TypeError(f"expected an x509.Certificate, got {type(cert).__name__}")
        fp = fingerprint(cert)
        if fp != leaf_fingerprint and fp not in roots:
            pool.setdefault(fp, cert)
    if len(pool) > MAX_POOL:
        raise PathRejected(
            GeniCode.CREDENTIAL_INVALID, f"too many candidate issuer certificates ({len(pool)} > {MAX_POOL})"
        )
    identities: set[tuple[bytes, bytes]] = set()
    names: dict[bytes, int] = {}
    kept = []
    for cert in pool.values():
        name = cert.subject.public_bytes()
        identity = (name, public_key_der(cert))
        if identity in root_identities:
            continue
        if identity in identities:
            raise PathRejected(
                GeniCode.CREDENTIAL_INVALID,
                f"the chain holds more than one certificate named {cert.subject.rfc4514_string()!r} "
                "with the same public key; repeated issuers are refused",
            )
        identities.add(identity)
        names[name] = names.get(name, 0) + 1
        if names[name] > MAX_SAME_SUBJECT:
            raise PathRejected(
                GeniCode.CREDENTIAL_INVALID,
                f"the chain holds more than {MAX_SAME_SUBJECT} certificates named "
                f"{cert.subject.rfc4514_string()!r}; refused",
            )
        kept.append(cert)
    return kept


class PathSearch:
    """
    One depth-first search for a path from a leaf to a root, with bounded work.

    Use once: L{build} returns the path or raises L{PathRejected} naming
    the most telling reasons (a specific code, expired or not yet valid,
    before the generic untrusted one).
    """

    def __init__(
        self,
        roots_by_subject: Mapping[bytes, Sequence[x509.Certificate]],
        root_fingerprints: Iterable[bytes],
        pool: Sequence[x509.Certificate],
        at: float,
        deadline: Deadline | None = None,
        budget: int = MAX_ISSUER_CHECKS,
    ) -> None:
        """
        @param pool: the screened chain (see L{screen_pool}).
        @param at: the time validity windows are checked at, POSIX seconds.
        @param deadline: checked before every issuer check.
        @param budget: the most issuer checks to make.
        """
        self._roots_by_subject = roots_by_subject
        self._root_fingerprints = frozenset(root_fingerprints)
        self._pool_by_subject: dict[bytes, list[x509.Certificate]] = {}
        for cert in pool:
            self._pool_by_subject.setdefault(cert.subject.public_bytes(), []).append(cert)
        self._at = at
        self._deadline = deadline
        self._checks = 0
        self._budget = budget
        self._reasons: dict[str, GeniCode] = {}

    def build(self, leaf: x509.Certificate) -> tuple[x509.Certificate, ...]:
        """
        Return the path, leaf first, root last.

        @raise PathRejected: if there is none within the bounds.
        @raise Abandoned: if the deadline was abandoned.
        """
        check_validity(leaf, self._at)
        if fingerprint(leaf) in self._root_fingerprints:
            return (leaf,)
        path = self._extend([leaf], {fingerprint(leaf)})
        if path is not None:
            return path
        if is_self_issued(leaf):
            first = f"{describe(leaf)} is self-signed but not a trusted root"
            self._reasons = {first: GeniCode.CREDENTIAL_SIGNER_UNTRUSTED, **self._reasons}
        return self._refuse(leaf)

    def _refuse(self, leaf: x509.Certificate) -> tuple[x509.Certificate, ...]:
        if not self._reasons:
            raise PathRejected(
                GeniCode.CREDENTIAL_SIGNER_UNTRUSTED, f"untrusted {describe(leaf)}: no path to a trusted root"
            )
        codes = list(self._reasons.values())
        specific = [code for code in codes if code != GeniCode.CREDENTIAL_SIGNER_UNTRUSTED]
        best = specific[0] if specific else codes[0]
        raise PathRejected(best, f"untrusted {describe(leaf)}: " + "; ".join(self._reasons))

    def _note(self, code: GeniCode, reason: str) -> None:
        if reason not in self._reasons and len(self._reasons) < MAX_REASONS:
            self._reasons[reason] = code

    def _candidates(self, cert: x509.Certificate) -> list[x509.Certificate]:
        """
        Possible issuers of C{cert}: those whose subject is its issuer name.

        Roots come before the chain, and candidates whose key id matches the
        authorityKeyIdentifier before the others (key ids only order the
        search: issuers compute them in different ways, signatures decide).
        """
        wanted = cert.issuer.public_bytes()
        found = [*self._roots_by_subject.get(wanted, ()), *self._pool_by_subject.get(wanted, ())]
        aki = authority_key_id(cert)
        if aki is not None:
            found.sort(key=lambda c: subject_key_id(c) != aki)
        return found

    def _extend(self, path: list[x509.Certificate], in_path: set[bytes]) -> tuple[x509.Certificate, ...] | None:
        """Depth-first search from the last certificate of C{path} towards a root."""
        cert = path[-1]
        candidates = self._candidates(cert)
        if not candidates:
            if is_self_issued(cert):
                self._note(GeniCode.CREDENTIAL_SIGNER_UNTRUSTED, f"{describe(cert)} is self-signed but not a trusted root")
            else:
                self._note(
                    GeniCode.CREDENTIAL_SIGNER_UNTRUSTED,
                    f"no trusted issuer found for {describe(cert)} (issuer {cert.issuer.rfc4514_string()})",
                )
            return None
        for issuer in candidates:
            fp = fingerprint(issuer)
            is_root = fp in self._root_fingerprints
            if fp in in_path:
                if is_self_issued(cert) and not is_root:
                    self._note(GeniCode.CREDENTIAL_SIGNER_UNTRUSTED, f"{describe(cert)} is self-signed but not a trusted root")
                continue
            if len(path) >= MAX_PATH_LENGTH:
                self._note(GeniCode.CREDENTIAL_SIGNER_UNTRUSTED, f"certificate path longer than {MAX_PATH_LENGTH}")
                return None
            self._spend(path[0])
            intermediates_below = sum(1 for c in path[1:] if not is_self_issued(c))
            try:
                _check_issuer(cert, issuer, intermediates_below)
                check_validity(issuer, self._at)
            except PathRejected as e:
                self._note(e.code, e.reason)
                continue
            if is_root:
                return (*path, issuer)
            found = self._extend([*path, issuer], in_path | {fp})
            if found is not None:
                return found
        return None

    def _spend(self, leaf: x509.Certificate) -> None:
        """Count one issuer check against the budget; honour the deadline."""
        if self._deadline is not None:
            self._deadline.check()
        self._checks += 1
        if self._checks > self._budget:
            raise PathRejected(
                GeniCode.CREDENTIAL_SIGNER_UNTRUSTED,
                f"untrusted {describe(leaf)}: no path to a trusted root found within "
                f"{self._budget} issuer checks; refused",
            )
