# -*- test-case-name: tests.protocols.test_xmlrpc,tests.loopback.test_am -*-
"""
The XML-RPC server side shared by the aggregate manager and the slice manager.

L{GeniXmlRpcResource} decodes a call (a body repeated lately is decoded
once, L{geniam.protocols.marshal.DecodedCalls}), checks its arguments against a
declarative signature table (L{geniam.protocols.signatures}), asks the
injected C{identify} function who the caller is, and dispatches to the API
object's method of the same name as C{api.Method(caller, *args)}. Given a
C{contexts} factory (L{geniam.trust.context.context_maker}), the
C{credentials} argument is taken out and the method gets the call's
context instead: C{api.Method(contexts(caller, credentials), *other_args)}. Every
outcome the API can produce is a GENI return struct: L{GeniError} becomes
its struct, an unexpected exception is logged and answered with
SERVERERROR. XML-RPC faults are kept for malformed XML-RPC and unknown
methods.

L{GeniSite} refuses request bodies over a limit while they arrive, before
they are buffered, answering HTTP 413 and closing the connection; its
connections (L{geniam.protocols.httpchannel.GuardedHTTPChannel}) cut off
requests that arrive too slowly (408) or with over-long lines (414, 431).
L{make_site} serves one resource at C{/} and C{/am/3.0}.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, NoResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from geniam.errors import GeniCode, GeniError, error_struct
from geniam.observe.access import AccessLogging
from geniam.observe.calls import CallFacts, ICallObserver
from geniam.protocols.grammar import quoted
from geniam.protocols.httpchannel import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MIN_BODY_RATE,
    DEFAULT_REQUEST_TIMEOUT,
    GuardedHTTPChannel,
    peer_name,
)
from geniam.protocols.marshal import (
    METHOD_NOT_FOUND,
    DecodedCalls,
    XmlRpcDecodeError,
    dump_fault,
    dump_response,
)
from geniam.protocols.signatures import API_V3_SIGNATURES, Signature
from geniam.trust.context import MakeContext

DEFAULT_MAX_BODY = 4 * 1024 * 1024
"""Default limit on a request body, in bytes."""

DEFAULT_PATHS: tuple[str, ...] = ("/", "/am/3.0")
"""Where L{make_site} serves the resource by default."""

Identify = Callable[[IRequest], Any]
"""
C{identify(request) -> caller}: returns the caller object (or a Deferred
or coroutine firing with it); raises L{GeniError} to refuse the call.
"""


def _too_large_message(limit: int) -> bytes:
    return b"request body too large: the limit is %d bytes\n" % (limit,)


class BoundedRequest(Request):
    """
    A request that refuses a body longer than its site's C{max_body}.

    A declared C{Content-Length} over the limit is refused as soon as the
    headers are read; a chunked body is refused as soon as the received
    bytes pass the limit. Refusal answers HTTP 413 and closes the
    connection (L{GuardedHTTPChannel.refuse}); the request is never
    processed. Form bodies are
    not parsed into C{args}.
    """

    _refused = False
    _body_size = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("parsePOSTFormSubmission", False)
        super().__init__(*args, **kwargs)

    def _body_limit(self) -> int:
        site = getattr(self.channel, "site", None)
        return int(getattr(site, "max_body", DEFAULT_MAX_BODY))

    def gotLength(self, length: int | None) -> None:
        """Refuse a declared body length over the limit before any of it arrives."""
        limit = self._body_limit()
        if length is not None and length > limit:
            self.content = None
            self._refuse(limit)
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        """Store a piece of the body, refusing the request once it passes the limit."""
        if self._refused:
            return
        self._body_size += len(data)
        limit = self._body_limit()
        if self._body_size > limit:
            if self.content is not None:
                self.content.close()
                self.content = None
            self._refuse(limit)
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """Process the request unless its body was refused."""
        if self._refused:
            return
        super().requestReceived(command, path, version)

    def _refuse(self, limit: int) -> None:
        self._refused = True
        # No "100 Continue" may follow the refusal.
        self.requestHeaders.removeHeader(b"expect")
        channel = self.channel
        assert isinstance(channel, GuardedHTTPChannel), "a BoundedRequest is made by a GeniSite's channel"
        channel.refuse(413, _too_large_message(limit).decode("ascii").strip())


class GeniSite(AccessLogging, Site):
    """
    A L{Site} whose requests refuse bodies over C{max_body} bytes
    (L{BoundedRequest}), whose connections cut off slow and oversized
    requests (L{GuardedHTTPChannel}), and which can close every connection
    it still has (L{close_connections}: a stopped server answers nothing
    more, not even on a connection a client keeps alive). Its access log
    may be replaced (L{AccessLogging}).

    @ivar max_body: the body limit in bytes.
    @ivar request_timeout: seconds for a request's headers (see L{GuardedHTTPChannel}).
    @ivar min_body_rate: the rate floor for a request body, in bytes per second.
    @ivar access_log: the batched access log.
    """

    displayTracebacks = False
    protocol = GuardedHTTPChannel  # type: ignore[assignment]

    def __init__(
        self,
        resource: IResource,
        max_body: int = DEFAULT_MAX_BODY,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        min_body_rate: int = DEFAULT_MIN_BODY_RATE,
        **kwargs: Any,
    ) -> None:
        """
        @param resource: the root resource.
        @param max_body: the body limit in bytes.
        @param request_timeout: seconds for a request's headers.
        @param min_body_rate: the rate floor for a request body, in bytes per second.
        @param kwargs: passed to L{Site} (C{reactor}, which gives every
            timer, C{timeout}, the idle timeout of a kept-alive connection,
            and C{logPath}); C{timeout} defaults to L{DEFAULT_IDLE_TIMEOUT}.
        """
        kwargs.setdefault("timeout", DEFAULT_IDLE_TIMEOUT)
        super().__init__(resource, requestFactory=BoundedRequest, **kwargs)
        self.max_body = max_body
        self.request_timeout = request_timeout
        self.min_body_rate = min_body_rate
        self._open: set[GuardedHTTPChannel] = set()

    def buildProtocol(self, addr: Any) -> Any:
        """A L{GuardedHTTPChannel} with this site's bounds and clock, kept in the site's open set while connected."""
        channel = super().buildProtocol(addr)
        if isinstance(channel, GuardedHTTPChannel):
            channel.request_timeout = self.request_timeout
            channel.min_body_rate = self.min_body_rate
            channel.clock = self.reactor
            channel.open_set = self._open
        return channel

    @property
    def open_connections(self) -> int:
        """How many connections are open."""
        return len(self._open)

    def close_connections(self) -> None:
        """Drop every open connection at once (replies not yet written are lost)."""
        for channel in list(self._open):
            channel.transport.abortConnection()  # type: ignore[union-attr]


class _Directory(Resource):
    """An intermediate path segment: its children are served, it is not."""

    def render(self, request: IRequest) -> bytes:
        return NoResource().render(request)


def build_site_root(mounts: Mapping[str, IResource]) -> Resource:
    """
    Build a resource tree serving each resource at its path.

    @param mounts: C{{"/": resource, "/am/3.0": resource}}; paths are
        slash-separated, C{"/"} is the root itself.
    @return: the root of the tree; unknown paths answer 404.
    """
    root = _Directory()
    for path, leaf in mounts.items():
        segments = [segment.encode("utf-8") for segment in path.split("/") if segment]
        if not segments:
            root.putChild(b"", leaf)
            continue
        node: Resource = root
        for segment in segments[:-1]:
            child = node.children.get(segment)
            if child is None:
                child = _Directory()
                node.putChild(segment, child)
            node = child
        existing = node.children.get(segments[-1])
        if isinstance(existing, _Directory) and isinstance(leaf, Resource):
            for name, child in existing.children.items():
                leaf.putChild(name, child)  # a leaf at a/b and another at a/b/c
        node.putChild(segments[-1], leaf)
    return root


def make_site(
    resource: IResource,
    paths: Sequence[str] = DEFAULT_PATHS,
    max_body: int | None = None,
    more: Mapping[str, IResource] | None = None,
    **kwargs: Any,
) -> GeniSite:
    """
    Build a L{GeniSite} serving C{resource} at each of C{paths}.

    @param resource: usually a L{GeniXmlRpcResource}.
    @param paths: the paths to serve it at.
    @param max_body: the body limit; by default the resource's own
        C{max_body}, else L{DEFAULT_MAX_BODY}.
    @param more: further resources by path (another API on the same listener).
    @param kwargs: passed to L{GeniSite} (C{request_timeout},
        C{min_body_rate}, C{reactor}, C{timeout}).
    """
    if max_body is None:
        max_body = int(getattr(resource, "max_body", DEFAULT_MAX_BODY))
    return GeniSite(build_site_root({**{path: resource for path in paths}, **(more or {})}), max_body=max_body, **kwargs)


class _Exchange:
    """What one request has seen of its client going away."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.lost = False
        request.notifyFinish().addErrback(self._on_lost)

    def _on_lost(self, reason: Failure) -> None:
        self.lost = True


class GeniXmlRpcResource(Resource):
    """
    Serve GENI XML-RPC calls from an API object.

    @ivar max_body: the body limit in bytes (also checked after buffering,
        for a resource mounted under a plain L{Site}).
    """

    log = Logger()

    def __init__(
        self,
        api: object,
        identify: Identify,
        max_body: int = DEFAULT_MAX_BODY,
        methods: Mapping[str, Signature] = API_V3_SIGNATURES,
        reactor: IReactorFromThreads | None = None,
        threadpool: ThreadPool | None = None,
        observer: ICallObserver | None = None,
        contexts: MakeContext | None = None,
    ) -> None:
        """
        @param api: the object whose methods serve the calls; a method named
            in C{methods} but missing here answers as an unknown method.
        @param identify: see L{Identify}.
        @param contexts: when given, builds each call's context from the
            caller and its credentials; the API's methods then take the
            context in place of the caller and the credentials.
        @param max_body: the body limit in bytes.
        @param methods: the served method names and their signatures.
        @param reactor: required with C{threadpool}, to return results from it.
        @param threadpool: when given, decoding calls and encoding replies
            run in it; otherwise they run inline.
        @param observer: told about every call answered (for logs and metrics).
        """
        super().__init__()
        if threadpool is not None and reactor is None:
            raise ValueError("a thread pool needs a reactor")
        self._api = api
        self._identify = identify
        self.max_body = max_body
        self._methods = dict(methods)
        self._reactor = reactor
        self._threadpool = threadpool
        self._observer = observer
        self._contexts = contexts
        self._calls = DecodedCalls()

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        """Serve C{.../} like C{...}; anything below answers 404."""
        if path == b"":
            return self
        return NoResource()

    def render_POST(self, request: Request) -> bytes | int:  # type: ignore[override]
        """Answer one XML-RPC call; the reply is written when the call completes."""
        content = request.content
        data = b""
        if content is not None:
            content.seek(0, 0)
            data = content.read(self.max_body + 1)
        if len(data) > self.max_body:
            request.setResponseCode(413)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return _too_large_message(self.max_body)
        exchange = _Exchange(request)
        d = Deferred.fromCoroutine(self._answer(request, data))
        d.addCallback(self._send, exchange)
        d.addErrback(self._send_failed, exchange)
        return NOT_DONE_YET

    async def _run(self, function: Callable[..., Any], *args: Any) -> Any:
        if self._threadpool is None:
            return function(*args)
        assert self._reactor is not None
        return await deferToThreadPool(self._reactor, self._threadpool, function, *args)

    async def _answer(self, request: Request, data: bytes) -> bytes:
        observer = self._observer
        facts = CallFacts(observer.seconds() if observer is not None else 0.0, peer_name(request.getClientAddress()))
        try:
            return await self._dispatch(request, data, facts)
        finally:
            if observer is not None:
                observer.called(request, facts)

    async def _dispatch(self, request: Request, data: bytes, facts: CallFacts) -> bytes:
        peer = facts.peer
        try:
            method, args = await self._run(self._calls.parse_call, data)
        except XmlRpcDecodeError as e:
            self.log.info("malformed XML-RPC from {peer}: {reason}", peer=peer, reason=e.reason)
            return dump_fault(e.fault_code, e.reason)
        signature = self._methods.get(method)
        handler = getattr(self._api, signature.target or method, None) if signature is not None else None
        if signature is None or handler is None:
            shown = quoted(method, 64)
            self.log.info("unknown method {method} from {peer}", method=shown, peer=peer)
            return dump_fault(METHOD_NOT_FOUND, f"method {shown} not found")
        facts.method = method
        try:
            caller = facts.caller = await maybeDeferred(self._identify, request)
            bound = signature.bind(method, args)
            facts.args = tuple(bound)
            if self._contexts is not None:
                credentials, bound = signature.presented(bound)
                caller = self._contexts(caller, credentials)
            result = await maybeDeferred(handler, caller, *bound)
        except GeniError as e:
            self.log.info("{method} from {peer}: {code} {output}", method=method, peer=peer, code=e.code.name, output=e.output)
            result = e.as_struct()
        except Exception:
            self.log.failure("{method} from {peer} failed unexpectedly", method=method, peer=peer)
            result = error_struct(GeniCode.SERVERERROR, f"internal server error in {method}")
        facts.result = result
        try:
            return await self._run(dump_response, result)
        except Exception:
            self.log.failure("the reply to {method} cannot be encoded", method=method)
            return dump_response(error_struct(GeniCode.SERVERERROR, f"internal server error: the reply to {method} cannot be encoded"))

    def _send(self, body: bytes, exchange: _Exchange) -> None:
        request = exchange.request
        if exchange.lost:
            self.log.info("the client went away before its reply ({size} bytes)", size=len(body))
            return
        request.setHeader(b"content-type", b"text/xml; charset=utf-8")
        request.setHeader(b"content-length", b"%d" % (len(body),))
        request.write(body)
        request.finish()

    def _send_failed(self, reason: Failure, exchange: _Exchange) -> None:
        self.log.failure("writing an XML-RPC reply failed", failure=reason)
        if not exchange.lost:
            exchange.request.loseConnection()
