"""
Tests for L{geniam.protocols.xmlrpc}: the XML-RPC resource and its site,
driven in memory through an L{HTTPChannel} on a L{StringTransport}.
"""

from __future__ import annotations

import xmlrpc.client
from collections.abc import Callable
from datetime import datetime
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from geniam.errors import GeniCode, GeniError, success_struct
from geniam.protocols.marshal import INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, dump_call
from geniam.protocols.signatures import API_V3_SIGNATURES, Param, Signature, string
from geniam.protocols.xmlrpc import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_BODY,
    GeniSite,
    GeniXmlRpcResource,
    build_site_root,
    make_site,
)
from tests.protocols.test_marshal import BILLION_LAUGHS
from tests.protocols.test_signatures import VALID_ARGS

CLIENT = IPv4Address("TCP", "127.0.0.1", 40000)


class RecordingApi:
    """
    An API object recording every call; C{behaviour[name]} decides the
    answer (a value, a Deferred, or an exception to raise).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.behaviour: dict[str, Callable[..., Any]] = {}

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name not in API_V3_SIGNATURES:
            raise AttributeError(name)

        def method(caller: Any, *args: Any) -> Any:
            self.calls.append((name, caller) + args)
            answer = self.behaviour.get(name)
            if answer is None:
                return success_struct({"method": name})
            return answer(caller, *args)

        return method


class InlineThreadPool:
    """A thread pool that runs work at once and counts it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def callInThreadWithCallback(self, on_result: Callable[[bool, Any], None], function: Callable[..., Any], *args: Any) -> None:
        self.calls.append(function.__name__)
        try:
            result = function(*args)
        except BaseException:
            on_result(False, Failure())
        else:
            on_result(True, result)


class InlineFromThreads:
    """A reactor whose C{callFromThread} runs at once."""

    def callFromThread(self, function: Callable[..., Any], *args: Any) -> None:
        function(*args)


def http_request(body: bytes, path: bytes = b"/am/3.0", headers: dict[bytes, bytes] | None = None, method: bytes = b"POST") -> bytes:
    """Return the bytes of an HTTP/1.1 request with a Content-Length."""
    lines = [method + b" " + path + b" HTTP/1.1", b"Host: am.example", b"Content-Type: text/xml"]
    lines.append(b"Content-Length: %d" % (len(body),))
    for name, value in (headers or {}).items():
        lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def parse_http_responses(data: bytes) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Split the bytes a server wrote into (status, headers, body) triples."""
    responses = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.split(b"\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get(b"content-length", b"0"))
        responses.append((int(status_line.split()[1]), headers, rest[:length]))
        data = rest[length:]
    return responses


class ServerHarness:
    """A resource behind a L{GeniSite}, reached through in-memory channels."""

    def __init__(self, api: object, identify: Callable[[Any], Any] = lambda request: "alice", **kwargs: Any) -> None:
        self.reactor = MemoryReactorClock()
        self.resource = GeniXmlRpcResource(api, identify, **kwargs)
        self.site = make_site(self.resource, reactor=self.reactor)

    def connect(self) -> tuple[Any, StringTransport]:
        """Open a connection; return the channel and its transport."""
        channel = self.site.buildProtocol(CLIENT)
        transport = StringTransport(peerAddress=CLIENT)
        channel.makeConnection(transport)
        return channel, transport

    def post(self, body: bytes, path: bytes = b"/am/3.0", **kwargs: Any) -> tuple[int, dict[bytes, bytes], bytes]:
        """Send one request on a new connection and return the single response."""
        channel, transport = self.connect()
        channel.dataReceived(http_request(body, path, **kwargs))
        responses = parse_http_responses(transport.value())
        assert len(responses) == 1, responses
        return responses[0]

    def call(self, method: str, *params: Any, path: bytes = b"/am/3.0") -> Any:
        """Call C{method} and return the decoded value (or the Fault)."""
        status, headers, body = self.post(dump_call(method, params), path)
        assert status == 200, (status, body)
        assert headers[b"content-type"].startswith(b"text/xml"), headers
        try:
            return reply_value(body)
        except xmlrpc.client.Fault as fault:
            return fault


def reply_value(body: bytes) -> Any:
    """The single value of an XML-RPC response body."""
    return xmlrpc.client.loads(body)[0][0]


def geni_code(reply: dict[str, Any]) -> int:
    """The geni_code of a GENI return struct."""
    return int(reply["code"]["geni_code"])


class DispatchTests(SynchronousTestCase):
    """Valid calls reach the API object with the caller first."""

    def setUp(self) -> None:
        self.api = RecordingApi()
        self.server = ServerHarness(self.api)

    def test_every_method_dispatched(self) -> None:
        """Each of the ten methods reaches the API with the caller and its arguments."""
        for method, args in VALID_ARGS.items():
            reply = self.server.call(method, *args)
            self.assertEqual(reply, success_struct({"method": method}))
            self.assertEqual(self.api.calls[-1], (method, "alice", *args))
        self.assertEqual(len(self.api.calls), 10)

    def test_get_version_without_options(self) -> None:
        """GetVersion called without options receives an empty options struct."""
        self.server.call("GetVersion")
        self.assertEqual(self.api.calls, [("GetVersion", "alice", {})])

    def test_caller_from_identify(self) -> None:
        """The value C{identify} returns for the request is the first argument."""
        seen = []

        def identify(request: Any) -> str:
            seen.append(request.getClientAddress())
            return "urn:publicid:IDN+x+user+bob"

        server = ServerHarness(self.api, identify)
        server.call("GetVersion", {})
        self.assertEqual(self.api.calls[0][1], "urn:publicid:IDN+x+user+bob")
        self.assertEqual(seen, [CLIENT])

    def test_identify_may_be_asynchronous(self) -> None:
        """An C{identify} returning a Deferred delays the call until it fires."""
        pending: Deferred[str] = Deferred()
        server = ServerHarness(self.api, lambda request: pending)
        channel, transport = server.connect()
        channel.dataReceived(http_request(dump_call("GetVersion", ())))
        self.assertEqual(self.api.calls, [])
        pending.callback("carol")
        self.assertEqual(self.api.calls, [("GetVersion", "carol", {})])
        self.assertEqual(parse_http_responses(transport.value())[0][0], 200)

    def test_coroutine_method(self) -> None:
        """An C{async def} API method is awaited."""

        class AsyncApi:
            async def GetVersion(self, caller: Any, options: dict[str, Any]) -> dict[str, Any]:
                return success_struct({"async": True})

        self.assertEqual(ServerHarness(AsyncApi()).call("GetVersion"), success_struct({"async": True}))

    def test_deferred_reply_written_when_fired(self) -> None:
        """A Deferred from the API holds the reply until it fires."""
        pending: Deferred[dict[str, Any]] = Deferred()
        self.api.behaviour["Status"] = lambda *args: pending
        channel, transport = self.server.connect()
        channel.dataReceived(http_request(dump_call("Status", VALID_ARGS["Status"])))
        self.assertEqual(transport.value(), b"")
        pending.callback(success_struct({"geni_slivers": []}))
        status, _, body = parse_http_responses(transport.value())[0]
        self.assertEqual(status, 200)
        self.assertEqual(reply_value(body)["value"], {"geni_slivers": []})

    def test_paths(self) -> None:
        """The resource answers at /, /am/3.0 and /am/3.0/; other paths are 404."""
        for path in (b"/", b"/am/3.0", b"/am/3.0/"):
            self.assertEqual(geni_code(self.server.call("GetVersion", path=path)), 0, path)
        for path in (b"/am", b"/am/2.0", b"/am/3.0/x", b"/other"):
            status, _, _ = self.server.post(dump_call("GetVersion", ()), path)
            self.assertEqual(status, 404, path)

    def test_idle_timeout(self) -> None:
        """An idle connection is closed after five minutes, longer than a client pool keeps one."""
        channel, transport = self.server.connect()
        channel.dataReceived(http_request(dump_call("GetVersion", ())))
        self.server.reactor.advance(DEFAULT_IDLE_TIMEOUT - 1)
        self.assertFalse(transport.disconnecting)
        self.server.reactor.advance(1)
        self.assertTrue(transport.disconnecting)

    def test_get_not_allowed(self) -> None:
        """Only POST is served."""
        status, _, _ = self.server.post(b"", method=b"GET")
        self.assertEqual(status, 405)

    def test_keep_alive(self) -> None:
        """Two calls on one HTTP/1.1 connection are both answered and it stays open."""
        channel, transport = self.server.connect()
        channel.dataReceived(http_request(dump_call("GetVersion", ())))
        channel.dataReceived(http_request(dump_call("Delete", VALID_ARGS["Delete"])))
        responses = parse_http_responses(transport.value())
        self.assertEqual([status for status, _, _ in responses], [200, 200])
        self.assertEqual([call[0] for call in self.api.calls], ["GetVersion", "Delete"])
        self.assertFalse(transport.disconnecting)

    def test_other_method_sets(self) -> None:
        """A resource serves any signature table, calling the named target."""

        class TicketApi:
            def get_ticket(self, caller: Any, slice_urn: str) -> dict[str, Any]:
                return success_struct({"ticket": slice_urn})

        methods = {"GetTicket": Signature((Param("slice_urn", string),), target="get_ticket")}
        server = ServerHarness(TicketApi(), methods=methods)
        self.assertEqual(server.call("GetTicket", "urn:s")["value"], {"ticket": "urn:s"})
        self.assertEqual(server.call("GetVersion").faultCode, METHOD_NOT_FOUND)

    def test_thread_pool(self) -> None:
        """With a thread pool, decoding and encoding run in it."""
        pool = InlineThreadPool()
        server = ServerHarness(self.api, reactor=InlineFromThreads(), threadpool=pool)
        self.assertEqual(geni_code(server.call("GetVersion")), 0)
        self.assertEqual(pool.calls, ["parse_call", "dump_response"])

    def test_thread_pool_needs_reactor(self) -> None:
        """A thread pool without a reactor is a construction error."""
        self.assertRaises(ValueError, GeniXmlRpcResource, self.api, lambda r: None, threadpool=InlineThreadPool())


class ContextDispatchTests(SynchronousTestCase):
    """With a context factory, the credentials leave the arguments and arrive in the call's context."""

    def setUp(self) -> None:
        self.api = RecordingApi()
        self.made: list[tuple[Any, list[Any]]] = []

        def contexts(caller: Any, credentials: Any) -> tuple[str, Any]:
            self.made.append((caller, credentials))
            return ("context", caller)

        self.server = ServerHarness(self.api, contexts=contexts)

    def test_every_method_gets_a_context(self) -> None:
        """Each method gets the context of (the identified caller, its credentials) and its other arguments in order."""
        for method, args in VALID_ARGS.items():
            self.server.call(method, *args)
            params = API_V3_SIGNATURES[method].params
            credentials = [a for p, a in zip(params, args) if p.name == "credentials"]
            rest = [a for p, a in zip(params, args) if p.name != "credentials"]
            self.assertEqual(self.made[-1], ("alice", credentials[0] if credentials else []), method)
            self.assertEqual(self.api.calls[-1], (method, ("context", "alice"), *rest))
        self.assertEqual(len(self.made), 10)

    def test_bad_credentials_refused_before_any_context(self) -> None:
        """A credentials argument that is not an array is BADARGS; no context is made and the API is not called."""
        reply = self.server.call("Status", ["urn:publicid:IDN+x+slice+s"], "not a list", {})
        self.assertEqual(geni_code(reply), GeniCode.BADARGS)
        self.assertIn("credentials", reply["output"])
        self.assertEqual((self.made, self.api.calls), ([], []))


class ErrorReplyTests(SynchronousTestCase):
    """Failures become GENI structs; faults are kept for malformed XML-RPC."""

    def setUp(self) -> None:
        self.api = RecordingApi()
        self.server = ServerHarness(self.api)

    def test_wrong_types_each_method(self) -> None:
        """A wrong first argument to each method is a BADARGS struct; the API is not called."""
        for method, args in VALID_ARGS.items():
            wrong = [42] + list(args[1:])
            reply = self.server.call(method, *wrong)
            self.assertEqual(geni_code(reply), GeniCode.BADARGS, method)
            self.assertIn(API_V3_SIGNATURES[method].params[0].name, reply["output"])
        self.assertEqual(self.api.calls, [])

    def test_missing_arguments(self) -> None:
        """Missing arguments are a MISSINGARGS struct."""
        reply = self.server.call("Allocate", "urn:publicid:IDN+x+slice+s")
        self.assertEqual(geni_code(reply), GeniCode.MISSINGARGS)
        self.assertIn("rspec", reply["output"])

    def test_geni_error_from_api(self) -> None:
        """A GeniError raised by the API becomes its struct, value and all."""

        def refuse(*args: Any) -> None:
            raise GeniError(GeniCode.OUTOFRANGE, "too late", value="2026-01-01T00:00:00Z")

        self.api.behaviour["Renew"] = refuse
        reply = self.server.call("Renew", *VALID_ARGS["Renew"])
        self.assertEqual(geni_code(reply), GeniCode.OUTOFRANGE)
        self.assertEqual((reply["output"], reply["value"]), ("too late", "2026-01-01T00:00:00Z"))

    def test_unexpected_exception(self) -> None:
        """An unexpected exception is logged and answered with SERVERERROR, without a traceback."""

        def crash(*args: Any) -> None:
            raise ZeroDivisionError("secret detail")

        self.api.behaviour["Provision"] = crash
        reply = self.server.call("Provision", *VALID_ARGS["Provision"])
        self.assertEqual(geni_code(reply), GeniCode.SERVERERROR)
        self.assertNotIn("secret", reply["output"])
        self.assertNotIn("Traceback", reply["output"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_identify_refuses(self) -> None:
        """A GeniError from C{identify} is the answer; the API is not called."""

        def identify(request: Any) -> None:
            raise GeniError(GeniCode.FORBIDDEN, "no client certificate")

        reply = ServerHarness(self.api, identify).call("GetVersion")
        self.assertEqual(geni_code(reply), GeniCode.FORBIDDEN)
        self.assertEqual(reply["output"], "no client certificate")
        self.assertEqual(self.api.calls, [])

    def test_identify_crashes(self) -> None:
        """An unexpected exception in C{identify} is logged and SERVERERROR."""

        def identify(request: Any) -> None:
            raise KeyError("oops")

        reply = ServerHarness(self.api, identify).call("GetVersion")
        self.assertEqual(geni_code(reply), GeniCode.SERVERERROR)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_unknown_method_fault(self) -> None:
        """An unknown method is fault -32601."""
        fault = self.server.call("CreateSliver", "urn:s")
        self.assertIsInstance(fault, xmlrpc.client.Fault)
        self.assertEqual(fault.faultCode, METHOD_NOT_FOUND)

    def test_method_missing_on_api(self) -> None:
        """A method in the table that the API lacks is also fault -32601."""

        class VersionOnly:
            def GetVersion(self, caller: Any, options: Any) -> dict[str, Any]:
                return success_struct({})

        self.assertEqual(ServerHarness(VersionOnly()).call("Shutdown", *VALID_ARGS["Shutdown"]).faultCode, METHOD_NOT_FOUND)

    def test_malformed_xml_fault(self) -> None:
        """Malformed XML is fault -32700."""
        status, _, body = self.server.post(b"<methodCall><methodName>GetVersion</methodCall>")
        self.assertEqual(status, 200)
        fault = self.assertRaises(xmlrpc.client.Fault, xmlrpc.client.loads, body)
        self.assertEqual(fault.faultCode, PARSE_ERROR)

    def test_entities_refused(self) -> None:
        """A DOCTYPE with entities is refused with fault -32700 and never expanded."""
        status, _, body = self.server.post(BILLION_LAUGHS)
        fault = self.assertRaises(xmlrpc.client.Fault, xmlrpc.client.loads, body)
        self.assertEqual(fault.faultCode, PARSE_ERROR)
        self.assertIn("DOCTYPE", fault.faultString)
        self.assertEqual(self.api.calls, [])

    def test_not_a_call_fault(self) -> None:
        """Well-formed XML that is not a methodCall is fault -32600."""
        _, _, body = self.server.post(b"<methodResponse><params/></methodResponse>")
        self.assertEqual(self.assertRaises(xmlrpc.client.Fault, xmlrpc.client.loads, body).faultCode, INVALID_REQUEST)


class SanitisingTests(SynchronousTestCase):
    """Replies never carry nil, dateTime or integers beyond 32 bits."""

    def test_reply_sanitised(self) -> None:
        """None members vanish, datetimes and big integers become strings."""
        api = RecordingApi()
        api.behaviour["Status"] = lambda *args: success_struct(
            {
                "geni_urn": "urn:s",
                "geni_slivers": [
                    {"geni_sliver_urn": "urn:v", "geni_error": None, "geni_expires": datetime(2026, 11, 22, 12)}
                ],
                "bytes": 2**33,
            }
        )
        server = ServerHarness(api)
        status, _, body = server.post(dump_call("Status", VALID_ARGS["Status"]))
        self.assertNotIn(b"<nil", body)
        self.assertNotIn(b"dateTime", body)
        value = reply_value(body)["value"]
        self.assertEqual(
            value,
            {
                "geni_urn": "urn:s",
                "geni_slivers": [{"geni_sliver_urn": "urn:v", "geni_expires": "2026-11-22T12:00:00Z"}],
                "bytes": "8589934592",
            },
        )

    def test_unencodable_reply(self) -> None:
        """A reply with no XML-RPC form is logged and answered with SERVERERROR."""
        api = RecordingApi()
        api.behaviour["GetVersion"] = lambda *args: success_struct({"thing": object()})
        reply = ServerHarness(api).call("GetVersion")
        self.assertEqual(geni_code(reply), GeniCode.SERVERERROR)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)


class DisconnectTests(SynchronousTestCase):
    """A client that goes away mid-call does not break the server."""

    def test_reply_after_disconnect(self) -> None:
        """A reply completing after the client left is dropped quietly."""
        api = RecordingApi()
        pending: Deferred[dict[str, Any]] = Deferred()
        api.behaviour["Allocate"] = lambda *args: pending
        server = ServerHarness(api)
        channel, transport = server.connect()
        channel.dataReceived(http_request(dump_call("Allocate", VALID_ARGS["Allocate"])))
        channel.connectionLost(Failure(ConnectionDone()))
        pending.callback(success_struct({"geni_rspec": "<rspec/>"}))
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_error_after_disconnect(self) -> None:
        """A failure completing after the client left is dropped quietly too."""
        api = RecordingApi()
        pending: Deferred[dict[str, Any]] = Deferred()
        api.behaviour["Delete"] = lambda *args: pending
        channel, transport = ServerHarness(api).connect()
        channel.dataReceived(http_request(dump_call("Delete", VALID_ARGS["Delete"])))
        channel.connectionLost(Failure(ConnectionDone()))
        pending.errback(GeniError(GeniCode.BUSY, "busy"))
        self.assertEqual(transport.value(), b"")


class BodyLimitTests(SynchronousTestCase):
    """Bodies over the limit are refused before they are buffered."""

    def setUp(self) -> None:
        self.api = RecordingApi()
        self.server = ServerHarness(self.api, max_body=1000)

    def test_site_takes_resource_limit(self) -> None:
        """L{make_site} takes the resource's limit; the default is 4 MiB."""
        self.assertEqual(self.server.site.max_body, 1000)
        self.assertEqual(DEFAULT_MAX_BODY, 4 * 1024 * 1024)
        self.assertEqual(GeniSite(Resource()).max_body, DEFAULT_MAX_BODY)

    def test_content_length_refused_at_headers(self) -> None:
        """A declared length over the limit gets 413 and a close before any body byte."""
        channel, transport = self.server.connect()
        head = http_request(b"", headers={b"Expect": b"100-continue"}).replace(b"Content-Length: 0", b"Content-Length: 1001")
        channel.dataReceived(head)
        data = transport.value()
        self.assertTrue(data.startswith(b"HTTP/1.1 413 "), data)
        self.assertNotIn(b"100 Continue", data)
        self.assertIn(b"1000 bytes", data)
        self.assertTrue(transport.disconnecting)
        channel.dataReceived(b"x" * 1001)
        self.assertEqual(transport.value(), data)
        self.assertEqual(self.api.calls, [])

    def test_chunked_refused_past_limit(self) -> None:
        """A chunked body is refused as soon as it passes the limit; later chunks are ignored."""
        channel, transport = self.server.connect()
        channel.dataReceived(
            b"POST /am/3.0 HTTP/1.1\r\nHost: am.example\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        channel.dataReceived(b"3e8\r\n" + b"a" * 1000 + b"\r\n")
        self.assertEqual(transport.value(), b"")
        channel.dataReceived(b"1\r\nb\r\n")
        data = transport.value()
        self.assertTrue(data.startswith(b"HTTP/1.1 413 "), data)
        self.assertTrue(transport.disconnecting)
        channel.dataReceived(b"5\r\nccccc\r\n0\r\n\r\n")
        self.assertEqual(transport.value(), data)
        self.assertEqual(self.api.calls, [])

    def test_chunked_within_limit(self) -> None:
        """A chunked call within the limit is served."""
        body = dump_call("GetVersion", ())
        channel, transport = self.server.connect()
        channel.dataReceived(
            b"POST /am/3.0 HTTP/1.1\r\nHost: am.example\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n" % (len(body),)
            + body
            + b"\r\n0\r\n\r\n"
        )
        status, _, reply = parse_http_responses(transport.value())[0]
        self.assertEqual(status, 200)
        self.assertEqual(geni_code(reply_value(reply)), 0)

    def test_limit_exactly(self) -> None:
        """A body of exactly the limit is accepted."""
        base = len(dump_call("Allocate", ["urn:s", [], "", {}]))
        body = dump_call("Allocate", ["urn:s", [], "r" * (1000 - base), {}])
        self.assertEqual(len(body), 1000)
        status, _, _ = self.server.post(body)
        self.assertEqual(status, 200)
        self.assertEqual(len(self.api.calls), 1)

    def test_resource_checks_under_plain_site(self) -> None:
        """Mounted under a plain L{Site}, the resource still refuses an oversized body with 413."""
        site = Site(build_site_root({"/": self.server.resource}), reactor=MemoryReactorClock())
        channel = site.buildProtocol(CLIENT)
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(http_request(b"x" * 1001, path=b"/"))
        status, _, body = parse_http_responses(transport.value())[0]
        self.assertEqual(status, 413)
        self.assertIn(b"1000 bytes", body)
        self.assertEqual(self.api.calls, [])
