"""The FastAPI app factory every service uses: health, readiness, metrics, auth, errors."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException

from cascade.shared import db
from cascade.shared.auth import TokenVerifier
from cascade.shared.kafka import BrokerProbe
from cascade.shared.logging import bind_context, clear_context, get_logger
from cascade.shared.messaging.errors import is_transient
from cascade.shared.metrics import HttpMetrics
from cascade.shared.settings import ServiceSettings

log = get_logger(__name__)

PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
)
READINESS_TIMEOUT_S = 3.0

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_service_app(
    settings: ServiceSettings,
    *,
    routers: Sequence[APIRouter] = (),
    lifespans: Sequence[Lifespan] = (),
    version: str = "0.1.0",
) -> FastAPI:
    """Returns a service's app: kit endpoints, error handlers, and its own routers."""
    registry = CollectorRegistry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = db.make_engine(settings.database)
        app.state.engine = engine
        app.state.sessions = db.make_sessionmaker(engine)
        app.state.broker_probe = BrokerProbe(settings.kafka)
        async with AsyncExitStack() as stack:
            stack.push_async_callback(engine.dispose)
            stack.push_async_callback(app.state.broker_probe.close)
            for extra in lifespans:
                await stack.enter_async_context(extra(app))
            log.info("service.started", port=settings.http_port)
            yield
        log.info("service.stopped")

    app = FastAPI(title=f"Cascade {settings.service_name}", version=version, lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = registry
    # Names of the background work the service cannot do without (its relay, its
    # consumers) that has ended on an error: liveness fails, so the process is replaced.
    app.state.ended_work = []
    app.state.token_verifier = TokenVerifier(settings.auth)
    _add_kit_routes(app, registry)
    _add_error_handlers(app)
    app.middleware("http")(_request_context(HttpMetrics(registry)))
    for router in routers:
        app.include_router(router)
    return app


def _add_kit_routes(app: FastAPI, registry: CollectorRegistry) -> None:
    @app.get(
        "/healthz",
        tags=["operations"],
        summary="Liveness: the process is serving, and its relay and consumers are running",
        responses={503: {"description": "A relay or consumer has ended: replace the process"}},
    )
    async def healthz(request: Request) -> JSONResponse:
        ended: list[str] = request.app.state.ended_work
        if ended:  # it will not recover by itself: the process needs replacing
            return JSONResponse({"status": "failing", "ended": ended}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Readiness: database and broker reachable",
        responses={503: {"description": "The database or the broker does not answer"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        checks = await _readiness_checks(request.app.state.engine, request.app.state.broker_probe)
        ready = all(state == "ok" for state in checks.values())
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def _readiness_checks(engine: AsyncEngine, probe: BrokerProbe) -> dict[str, str]:
    async def check(name: str, probe_call: Awaitable[None]) -> tuple[str, str]:
        try:
            await asyncio.wait_for(probe_call, READINESS_TIMEOUT_S)
        except Exception as error:  # any failure means "not ready"; the kind is logged
            log.warning("readiness.failed", check=name, error_class=type(error).__name__)
            return name, "unavailable"
        return name, "ok"

    results = await asyncio.gather(
        check("database", db.ping(engine)), check("broker", probe.ping())
    )
    return dict(results)


def _error_body(request: Request, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": message, "correlation_id": request.state.correlation_id, **extra}


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            _error_body(request, str(error.detail)),
            status_code=error.status_code,
            headers=error.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": ".".join(str(part) for part in item["loc"]), "problem": item["msg"]}
            for item in error.errors()
        ]
        return JSONResponse(
            _error_body(request, "the request is not valid", problems=problems), status_code=422
        )

    @app.exception_handler(DBAPIError)
    @app.exception_handler(PoolTimeoutError)
    @app.exception_handler(ConnectionError)
    async def dependency_down(request: Request, error: Exception) -> JSONResponse:
        if not is_transient(error):
            return await unexpected(request, error)
        log.warning("request.dependency_unavailable", error_class=type(error).__name__)
        return JSONResponse(
            _error_body(request, "a backing service is unavailable; retry later"),
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        # A generic body and a correlation id: no stack trace or SQL leaves the service.
        log.exception("request.failed", error_class=type(error).__name__)
        return JSONResponse(
            _error_body(request, "internal error; quote the correlation id to support"),
            status_code=500,
            # This handler runs outside the request middleware, which never sees the response.
            headers={"x-correlation-id": request.state.correlation_id},
        )


def _request_context(
    metrics: HttpMetrics,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    async def middleware(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        correlation_id = _safe_correlation_id(request.headers.get("x-correlation-id"))
        request.state.correlation_id = correlation_id
        clear_context()
        bind_context(correlation_id=correlation_id)
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        metrics.observe(request.method, template, response.status_code, started)
        response.headers["x-correlation-id"] = correlation_id
        return response

    return middleware


def _safe_correlation_id(raw: str | None) -> str:
    # A caller-supplied id is echoed into logs and headers, so accept only a plain token.
    if raw and len(raw) <= 64 and all(ch.isalnum() or ch in "-_." for ch in raw):
        return raw
    return str(uuid.uuid4())
