"""
The bare-Twisted limit that bench_am.py measures the aggregate manager against.

A plain C{twisted.web.xmlrpc.XMLRPC} resource on a plain
C{twisted.web.server.Site}, over TLS with a required client certificate
(Twisted's own C{CertificateOptions}: the server's certificate and key, the
trust roots as the only trust store), answering GetVersion and
ListResources with constants read from a JSON file: what the aggregate
manager answered in the same run, so both send the same bytes. Nothing is
checked beyond what OpenSSL does in the handshake.

  python bench/reference_am.py PORT CERT KEY ROOTS_DIR ANSWERS.json [--sessions]

It prints C{ready} once listening. C{--sessions} offers TLS session
resumption from a server-side session cache, as the aggregate manager does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    """Listen on 127.0.0.1:PORT and serve until killed."""
    from OpenSSL import crypto
    from twisted.internet import reactor, ssl
    from twisted.web import server, xmlrpc

    port, cert_path, key_path, roots_dir, answers_path = argv[:5]
    sessions = "--sessions" in argv[5:]
    answers = json.loads(Path(answers_path).read_text())

    class Reference(xmlrpc.XMLRPC):
        """Constant answers, as fast as Twisted serves XML-RPC."""

        def xmlrpc_GetVersion(self, *args: object) -> object:
            return answers["GetVersion"]

        def xmlrpc_ListResources(self, *args: object) -> object:
            return answers["ListResources"]

    pem = Path(cert_path).read_bytes()
    certificate = crypto.load_certificate(crypto.FILETYPE_PEM, pem)
    key = crypto.load_privatekey(crypto.FILETYPE_PEM, Path(key_path).read_bytes())
    roots = [
        ssl.Certificate.loadPEM(p.read_bytes())
        for p in sorted(Path(roots_dir).iterdir())
        if p.suffix in (".pem", ".crt", ".cert")
    ]
    options = ssl.CertificateOptions(
        privateKey=key,
        certificate=certificate,
        trustRoot=ssl.trustRootFromCertificates(roots),
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        enableSessions=sessions,
    )
    site = server.Site(Reference(allowNone=False))
    site.noisy = False
    reactor.listenSSL(int(port), site, options, interface="127.0.0.1")  # type: ignore[attr-defined]
    reactor.callWhenRunning(lambda: print("ready", flush=True))  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1:])
