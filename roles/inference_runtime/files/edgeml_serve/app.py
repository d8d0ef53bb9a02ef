"""The HTTP side: KServe Open Inference Protocol v2 routes on Starlette."""

import asyncio
import contextlib
import hmac
import logging
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import __version__, config as config_mod
from .metrics import Metrics
from .models import ModelSet, choose_providers
from .protocol import BadRequest, decode, encode

LOG = logging.getLogger("edgeml_serve")
OPEN_PATHS = ("/v2/health/live", "/v2/health/ready")


def error(status, message):
    return JSONResponse({"error": message}, status_code=status)


class Server:
    def __init__(self, config_path):
        self.config_path = config_path
        self.config = config_mod.load(config_path)
        self.metrics = Metrics()
        self.models = ModelSet(self.metrics, choose_providers(self.config.providers),
                               self.config.intra_op_threads)
        self.executor = ThreadPoolExecutor(self.config.threads, thread_name_prefix="infer")
        self.token = self.config.token

    async def reload(self):
        """SIGHUP: read the configuration again and load what changed, old versions serving."""
        try:
            new = config_mod.load(self.config_path)
        except config_mod.ConfigError as exc:
            LOG.error("reload: %s; keeping the running configuration", exc)
            return
        self.config, self.token = new, new.token
        await asyncio.get_running_loop().run_in_executor(None, self.models.load, new.models)
        LOG.info("reload: done; serving %s", ", ".join(self.models.names()) or "nothing")

    @contextlib.asynccontextmanager
    async def lifespan(self, _app):
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.models.load, self.config.models)
        if threading.current_thread() is threading.main_thread():  # not so under a test client
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        yield
        self.executor.shutdown(wait=True)

    # -- middleware-ish checks ---------------------------------------------------------------
    def unauthorized(self, request):
        if not self.token or request.url.path in OPEN_PATHS:
            return None
        header = request.headers.get("authorization", "")
        if hmac.compare_digest(header.encode(), f"Bearer {self.token}".encode()):
            return None
        return error(401, "missing or wrong bearer token")

    async def body(self, request):
        length = request.headers.get("content-length")
        limit = self.config.max_request_bytes
        if length and length.isdigit() and int(length) > limit:
            raise BadRequest(f"request of {length} bytes is over the limit of {limit}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadRequest(f"request is over the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

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
            self.metrics.error(name, 404)
            return problem
        started = time.perf_counter()
        try:
            body = await self.body(request)
            request_id, arrays, names, binary = decode(
                body, request.headers.get("inference-header-content-length"), model.inputs)
            if model.inline:  # fast once warm (see LoadedModel)
                outputs = model.infer(arrays, names)
            else:
                outputs = await asyncio.get_running_loop().run_in_executor(
                    self.executor, model.infer, arrays, names)
        except BadRequest as exc:
            self.metrics.error(name, 400)
            status = 413 if "over the limit" in str(exc) else 400
            return error(status, str(exc))
        except KeyError as exc:
            self.metrics.error(name, 400)
            return error(400, str(exc.args[0]))
        except Exception as exc:  # pylint: disable=broad-except  # onnxruntime's own errors
            self.metrics.error(name, 500)
            LOG.exception("model %s: inference failed", name)
            return error(500, f"inference failed: {exc}")
        data, headers = encode(model.name, model.version, request_id, outputs, binary)
        self.metrics.observe(name, time.perf_counter() - started)
        return Response(data, headers=headers)

    async def metrics_page(self, request):
        return self.unauthorized(request) or PlainTextResponse(
            self.metrics.render(), media_type="text/plain; version=0.0.4")

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
            Route("/metrics", self.metrics_page),
        ]
        return Starlette(routes=routes, lifespan=self.lifespan)
