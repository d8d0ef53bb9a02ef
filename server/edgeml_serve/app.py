"""The HTTP side: KServe Open Inference Protocol v2 routes on Starlette."""

import asyncio
import contextlib
import hmac
import logging
import math
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import anyio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import __version__, config as config_mod
from .connections import CLIENT_GONE, CLOSED_BY_SERVER, Events
from .metrics import Metrics
from .models import ModelSet, choose_providers
from .protocol import BadRequest, TooLarge, decode, encode
from .capture import CaptureWriter, Reservoir
from .stats import render as render_stats

LOG = logging.getLogger("edgeml_serve")
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")
LOCAL_CLIENTS = ("127.0.0.1", "::1", "testclient")  # testclient: Starlette's in-process test client
ANSWER_CHUNK = 1 << 20  # an answer goes out in pieces of this, checking the client is still there
UNKNOWN_MODEL = "(not served)"  # the metrics label of requests for models the server does not know


class ClientGone(Exception):
    """The client closed its connection; the message says at which point."""


class Busy(Exception):
    """The request bodies held at once are at their limit (max_buffered_bytes): 503."""


def error(status, message, headers=None):
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def client_gone(scope, receive):
    """Whether the client has gone, without waiting: from the server's flag where it gives one
    (connections.CLIENT_GONE), else as Request.is_disconnected does (a receive cancelled at once)."""
    flag = scope.get(CLIENT_GONE)
    if flag is not None:
        return flag()
    message = {}
    with anyio.CancelScope() as cancelled:
        cancelled.cancel()
        message = await receive()  # returns at once only when there is something to say
    return message.get("type") == "http.disconnect"


class Answer(Response):
    """An inference answer. A large one goes out in pieces; if the client goes away meanwhile
    the rest is not sent and on_gone(bytes sent, total) is called, once. after(), if given, is
    called once the answer is out (or could not be sent), on the event loop: a shadow's job."""

    def __init__(self, content, headers, on_gone, after=None):
        super().__init__(content, headers=headers)
        self.on_gone = on_gone
        self.after = after

    async def __call__(self, scope, receive, send):
        try:
            await self.send_answer(scope, receive, send)
        finally:
            if self.after is not None:
                self.after()

    async def send_answer(self, scope, receive, send):
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        total = len(self.body)
        if total <= ANSWER_CHUNK:
            await send({"type": "http.response.body", "body": self.body})
            return
        view = memoryview(self.body)
        for start in range(0, total, ANSWER_CHUNK):
            if start and await client_gone(scope, receive):
                self.on_gone(start, total)
                return
            end = start + ANSWER_CHUNK
            await send({"type": "http.response.body", "body": bytes(view[start:end]),
                        "more_body": end < total})


class Server:
    def __init__(self, config_path):
        self.config_path = config_path
        self.config = config_mod.load(config_path)
        self.metrics = Metrics()
        capture = (self.config.capture_samples, self.config.capture_max_sample_bytes) \
            if self.config.capture_dir else None
        self.models = ModelSet(self.metrics, choose_providers(self.config.providers),
                               self.config.intra_op_threads, self.config.statistics, capture,
                               self.config.intra_op_spinning)
        self.writer = CaptureWriter(self.config.capture_dir, self.config.capture_max_bytes) \
            if self.config.capture_dir else None
        self.executor = ThreadPoolExecutor(self.config.threads, thread_name_prefix="infer")
        # shadow candidates run here, one request at a time (shadow.py)
        self.shadow_executor = ThreadPoolExecutor(1, thread_name_prefix="shadow")
        self.token = self.config.token
        self.events = Events(self.metrics)
        self.buffered = 0  # request body bytes held now, all requests (max_buffered_bytes)

    async def reload(self):
        """SIGHUP: read the configuration again and load what changed, old versions serving."""
        try:
            new = config_mod.load(self.config_path)
            token = new.token
        except config_mod.ConfigError as exc:
            LOG.error("reload: %s; keeping the running configuration", exc)
            return
        await self.flush_captures()  # the period so far, under the settings it was taken with
        self.config, self.token = new, token
        self.models.statistics = new.statistics  # for versions loaded from now on
        capture = (new.capture_samples, new.capture_max_sample_bytes) if new.capture_dir else None
        self.models.capture = capture
        self.writer = CaptureWriter(new.capture_dir, new.capture_max_bytes) if capture else None
        for model in self.models.loaded():  # capture turned on or off applies to what serves now
            model.capture = Reservoir(*capture) if capture else None
        await asyncio.get_running_loop().run_in_executor(None, self.models.load, new.models)
        LOG.info("reload: done; serving %s", ", ".join(self.models.names()) or "nothing")

    @contextlib.asynccontextmanager
    async def lifespan(self, _app):
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.models.load, self.config.models)
        if threading.current_thread() is threading.main_thread():  # not so under a test client
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        flusher = asyncio.ensure_future(self.flush_captures_every())
        yield
        flusher.cancel()
        await self.flush_captures()  # what the last period kept
        self.executor.shutdown(wait=True)
        self.shadow_executor.shutdown(wait=True, cancel_futures=True)

    async def flush_captures_every(self):
        while True:
            await asyncio.sleep(self.config.capture_flush_seconds)
            try:
                await self.flush_captures()
            except Exception:  # pylint: disable=broad-except  # the loop must outlive any one write
                LOG.exception("capture: a flush failed")

    async def flush_captures(self):
        """Write each version's sample of the period (taken on the loop, written off it)."""
        if self.writer is None:
            self.models.retired.clear()
            return
        batches = []
        while self.models.retired:
            model = self.models.retired.popleft()
            if model.capture:
                batches.append((model.name, model.version, model.capture.drain()[0]))
        for model in self.models.loaded():
            if model.capture:
                batches.append((model.name, model.version, model.capture.drain()[0]))
        for name, version, lines in batches:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.writer.write, name, version, lines)
            except OSError as exc:
                self.metrics.event("capture_error")
                LOG.error("model %s: capture not written: %s", name, exc)

    # -- middleware-ish checks ---------------------------------------------------------------
    def unauthorized(self, request):
        if not self.token or request.url.path in OPEN_PATHS:
            return None
        header = request.headers.get("authorization", "")
        if hmac.compare_digest(header.encode(), f"Bearer {self.token}".encode()):
            return None
        return error(401, "missing or wrong bearer token")

    async def body(self, request, held):
        """The request body, counted against max_request_bytes and, with every other body being
        read, max_buffered_bytes; held[0] is what this request holds (the caller gives it back)."""
        length = request.headers.get("content-length")
        limit, budget = self.config.max_request_bytes, self.config.buffered_bytes
        if length and length.isdigit() and int(length) > limit:
            raise TooLarge(f"request of {length} bytes is over the limit of {limit}")
        data = bytearray()
        try:
            async for chunk in request.stream():
                if len(data) + len(chunk) > limit:
                    raise TooLarge(f"request is over the limit of {limit} bytes")
                if self.buffered + len(chunk) > budget:
                    raise Busy(f"the request bodies being read are at the limit of {budget} "
                               "bytes at once (max_buffered_bytes); try again shortly")
                self.buffered += len(chunk)
                held[0] += len(chunk)
                data += chunk
        except ClientDisconnect:
            raise ClientGone("while sending its request") from None
        return data

    def gone(self, request, name, when):
        """A client that went away: one log line (none if the server cut it off), no answer."""
        closed_by = request.scope.get(CLOSED_BY_SERVER)
        self.metrics.error(name, 408 if closed_by in ("header_timeout", "body_timeout") else 499)
        if not closed_by:
            who = f"{request.client.host}:{request.client.port}" if request.client else "a client"
            self.events.note("client_gone", f"{who}: model {name}: the client went away {when}",
                             logging.INFO)
        return Response(status_code=499)  # not sent: nobody is listening

    def model_or_error(self, request):
        name = request.path_params["model"]
        model = self.models.get(name)
        if model is None:
            detail = self.models.failures.get(name)
            served = ", ".join(self.models.names()) or "none"
            why = f" (loading failed: {detail})" if detail else ""
            return None, error(404, f"model '{name}' is not served{why}; served: {served}")
        version = request.path_params.get("version")
        if version and version != model.version:
            return None, error(404, f"model '{name}' version '{version}' is not served; "
                                    f"serving {model.version}")
        return model, None

    # -- routes ------------------------------------------------------------------------------
    async def live(self, _request):
        return JSONResponse({"live": True})

    async def ready(self, _request):
        ok = self.models.ready(self.config.models)
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    async def server_metadata(self, request):
        return self.unauthorized(request) or JSONResponse(
            {"name": "edgeml-serve", "version": __version__, "extensions": ["binary_tensor_data"]})

    async def model_metadata(self, request):
        denied = self.unauthorized(request)
        if denied:
            return denied
        model, problem = self.model_or_error(request)
        return problem or JSONResponse(model.metadata())

    async def model_ready(self, request):
        denied = self.unauthorized(request)
        if denied:
            return denied
        model, problem = self.model_or_error(request)
        if problem:
            return JSONResponse({"name": request.path_params["model"], "ready": False},
                                status_code=503 if request.path_params["model"] in
                                {m.name for m in self.config.models} else 404)
        return JSONResponse({"name": model.name, "ready": True})

    async def infer(self, request):
        denied = self.unauthorized(request)
        if denied:
            return denied
        name = request.path_params["model"]
        model, problem = self.model_or_error(request)
        if problem:
            # Counted under the name only if it is one the server is configured with: a label per
            # name a client makes up would grow the metrics without bound.
            self.metrics.error(name if name in {m.name for m in self.config.models}
                               else UNKNOWN_MODEL, 404)
            return problem
        started = time.perf_counter()
        held = [0]
        try:
            body = await self.body(request, held)
            request_id, arrays, names, binary = decode(
                body, request.headers.get("inference-header-content-length"), model.inputs,
                self.config.max_elements)
            inferring = time.perf_counter()
            if model.inline:  # fast once warm (see LoadedModel)
                outputs = model.infer(arrays, names)
            else:
                outputs = await asyncio.get_running_loop().run_in_executor(
                    self.executor, model.infer, arrays, names)
            inferred = time.perf_counter() - inferring
            data, headers = encode(model.name, model.version, request_id, outputs, binary)
        except BadRequest as exc:
            self.metrics.error(name, 400)
            if isinstance(exc, TooLarge):  # the rest of the body is not read: close
                return error(413, str(exc), {"connection": "close"})
            return error(400, str(exc))
        except KeyError as exc:
            self.metrics.error(name, 400)
            return error(400, str(exc.args[0]))
        except Busy as exc:
            self.metrics.error(name, 503)
            self.events.note("busy", f"model {name}: refused with 503: {exc}")
            return error(503, str(exc), {"retry-after": "1", "connection": "close"})
        except ClientGone as exc:
            return self.gone(request, name, str(exc))
        except Exception as exc:  # pylint: disable=broad-except  # onnxruntime's own errors
            self.metrics.error(name, 500)
            LOG.exception("model %s: inference failed", name)
            return error(500, f"inference failed: {exc}")
        finally:
            self.buffered -= held[0]
        self.observe(model, arrays, outputs)
        if await client_gone(request.scope, request.receive):
            return self.gone(request, name, "before its answer was ready")
        self.metrics.observe(name, time.perf_counter() - started)
        shadow, after = self.models.shadows.get(name), None
        if shadow is not None and shadow.expired():
            self.models.expire_shadow(name)
        elif shadow is not None and shadow.serving_version == model.version:
            after = shadow.offer(self.shadow_executor, arrays, names, outputs, inferred)
        return Answer(data, headers, lambda sent, total: self.gone(
            request, name, f"after {sent} of the {total} bytes of its answer"), after)

    def observe(self, model, arrays, outputs):
        """Add an answered request to its version's statistics. Statistics never fail a request,
        nor can one request turn them off: a request whose statistics fail is left out of them,
        counted (stats_error, and the version's errors) and logged at the 1st, 10th, 100th... time."""
        if model.capture is not None:
            try:
                model.capture.offer(arrays, outputs)
            except Exception:  # pylint: disable=broad-except  # capture never fails a request
                self.metrics.event("capture_error")
        stats = model.stats
        if stats is None:
            return
        try:
            stats.observe(arrays, outputs)
        except Exception:  # pylint: disable=broad-except  # whatever it is, the answer stands
            stats.errors += 1
            self.metrics.event("stats_error")
            if math.log10(stats.errors).is_integer():
                LOG.exception("model %s version %s: running statistics failed for a request (%d so "
                              "far); it is left out of them", model.name, model.version, stats.errors)

    async def stats(self, request):
        denied = self.unauthorized(request)
        if denied:
            return denied
        model, problem = self.model_or_error(request)
        if problem:
            return problem
        if model.stats is None:
            return error(404, f"model {model.name}: no running statistics (statistics: false in "
                              "the configuration)")
        # service: the model's requests, errors and answer times since the server started (all
        # versions), for the drift report's latency and error figures
        return JSONResponse(dict(model.stats.report(model.name), service=self.metrics.summary(model.name)))

    async def shadow(self, request):
        """What the comparison of a model's shadow candidate with its serving version found.
        Local callers only (the promotion gate runs on the host): read before and after one's
        own request, the agreement count would tell a client the candidate's answer to it."""
        denied = self.unauthorized(request)
        if denied:
            return denied
        if not request.client or request.client.host not in LOCAL_CLIENTS:
            return error(403, "the shadow figures are for callers on the host itself")
        model, problem = self.model_or_error(request)
        if problem:
            return problem
        shadow = self.models.shadows.get(model.name)
        if shadow is not None and shadow.expired():
            self.models.expire_shadow(model.name)
            shadow = self.models.shadows.get(model.name)
        if shadow is None:
            why = self.models.shadow_failures.get(model.name)
            if why:
                return JSONResponse({"error": f"model '{model.name}' has no shadow version ({why})",
                                     "shadow_failed": why}, status_code=404)
            return error(404, f"model '{model.name}' has no shadow version")
        return JSONResponse(shadow.report(model.name))

    async def metrics_page(self, request):
        return self.unauthorized(request) or PlainTextResponse(
            self.metrics.render() + "\n".join(render_stats(self.models.loaded())) + "\n",
            media_type="text/plain; version=0.0.4")

    def app(self):
        routes = [
            Route("/v2/health/live", self.live),
            Route("/v2/health/ready", self.ready),
            Route("/v2", self.server_metadata),
            Route("/v2/models/{model}", self.model_metadata),
            Route("/v2/models/{model}/versions/{version}", self.model_metadata),
            Route("/v2/models/{model}/ready", self.model_ready),
            Route("/v2/models/{model}/versions/{version}/ready", self.model_ready),
            Route("/v2/models/{model}/infer", self.infer, methods=["POST"]),
            Route("/v2/models/{model}/versions/{version}/infer", self.infer, methods=["POST"]),
            Route("/v2/models/{model}/stats", self.stats),
            Route("/v2/models/{model}/shadow", self.shadow),
            Route("/metrics", self.metrics_page),
        ]
        return Starlette(routes=routes, lifespan=self.lifespan)
