"""The HTTP API (FastAPI app factory).

    POST /v1/recommend       ranked items for a user, a profile, recent items and/or stated preferences, with filters
    POST /v1/feedback        append events to the durable event log; answered after commit
    GET  /healthz            the process is up
    GET  /readyz             a bundle is loaded and validated (503 until then)
    GET  /metrics            Prometheus exposition
    GET  /v1/models          the served model and bundle
    POST /v1/admin/reload    load a bundle beside the current one, validate, swap (bearer token)

Every client error is a 4xx with a JSON `detail`: 422 for a body that does not validate (k out
of range, an unknown category, a malformed event, a non-finite number, text that is not valid
Unicode), 413 for an oversized body, 408 for a body or headers that do not arrive in time, 401/403
for reload (or, with a feedback token, feedback) without the right token, 429 after repeated wrong
tokens or feedback over the per-client rate, 503 while no bundle is loaded or the event log is
unavailable. Replies name bundles relative to the bundle root, never by a host path.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import faiss
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bundleformat.manifest import BundleError, public_name
from bundleformat.signature import key_from_env
from serving.batching import LoopBatcher, RecommendBatcher
from serving.feedback import Event, FeedbackError, FeedbackLog
from serving.guards import (
    BundlePathError,
    FailureThrottle,
    RateLimiter,
    client_address,
    resolve_bundle_request,
    safe_text,
    safe_validation_errors,
)
from serving.metrics import MetricsMiddleware, ServiceMetrics
from serving.middleware import BodyLimitMiddleware
from serving.profile import Profile
from serving.retrieval import Query, QueryError, Retriever
from serving.schemas import (
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
    ModelInfo,
    ModelsResponse,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    ReloadRequest,
    ReloadResponse,
)
from serving.settings import Settings, check_tokens

log = logging.getLogger(__name__)

SYNC_FILE = "active_bundle.json"
ERRORS = {status: {"model": ErrorResponse} for status in (408, 413, 503)}
AUTH_ERRORS = {status: {"model": ErrorResponse} for status in (401, 403, 429)}


@dataclass
class ServiceState:
    """Mutable state of one worker. `retriever` is swapped by assignment, which is atomic: a request
    reads it once and keeps using that bundle even if a reload lands meanwhile."""

    settings: Settings
    metrics: ServiceMetrics
    retriever: Retriever | None = None
    load_error: str | None = None
    feedback: FeedbackLog | None = None
    reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    admin_token: str = ""
    feedback_token: str = ""
    seen_sync_mtime: int = 0

    def ready(self) -> Retriever:
        retriever = self.retriever
        if retriever is None:
            raise HTTPException(503, "no bundle is loaded yet" + (f" ({self.load_error})" if self.load_error else ""))
        return retriever

    def public(self, error: BundleError) -> str:
        return error.public(self.settings.bundle_root)

    def install(self, retriever: Retriever) -> str | None:
        previous = self.retriever.data.version if self.retriever is not None else None
        self.retriever = retriever
        self.load_error = None
        model = retriever.data.manifest["model"]
        self.metrics.set_bundle(retriever.data.version, str(model.get("kind", "")), str(model.get("name", "")),
                                retriever.data.n_items)
        return previous


def _load(settings: Settings, bundle: str | Path) -> Retriever:
    return Retriever.load(bundle, verify=True, threads=settings.threads, key=key_from_env())


# --- reloads published to every worker --------------------------------------------------------
def _publish_reload(settings: Settings, retriever: Retriever) -> None:
    if settings.sync_dir is None:
        return
    target = Path(settings.sync_dir) / SYNC_FILE
    partial = target.with_name(f".{SYNC_FILE}.{os.getpid()}")
    partial.write_text(json.dumps({"bundle": str(retriever.data.path), "bundle_version": retriever.data.version}))
    partial.replace(target)


def _published(settings: Settings) -> tuple[int, dict] | None:
    if settings.sync_dir is None:
        return None
    try:
        path = Path(settings.sync_dir) / SYNC_FILE
        mtime = path.stat().st_mtime_ns
        return mtime, json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


async def _follow_reloads(state: ServiceState) -> None:
    """Workers other than the one that took a reload request pick the new bundle up from the sync file."""
    while True:
        await asyncio.sleep(state.settings.sync_interval_s)
        published = _published(state.settings)
        if published is None or published[0] == state.seen_sync_mtime:
            continue
        mtime, target = published
        state.seen_sync_mtime = mtime
        current = state.retriever
        if current is not None and current.data.version == target.get("bundle_version"):
            continue
        async with state.reload_lock:
            try:
                retriever = await run_in_threadpool(_load, state.settings, target["bundle"])
            except (BundleError, KeyError, TypeError) as error:
                state.metrics.reloads.labels("follow_failed").inc()
                log.error("worker %d could not follow the published reload: %s", os.getpid(), error)
                continue
            previous = state.install(retriever)
            state.metrics.reloads.labels("followed").inc()
            log.info("worker %d followed reload %s -> %s", os.getpid(), previous, retriever.data.version)


def _bundle_to_load(settings: Settings) -> str:
    """The bundle a starting worker serves: the last reload published to the workers, else the configured one."""
    published = _published(settings)
    return published[1].get("bundle", settings.bundle) if published else settings.bundle


async def _initial_load(state: ServiceState) -> None:
    try:
        state.install(await run_in_threadpool(_load, state.settings, _bundle_to_load(state.settings)))
    except BundleError as error:
        state.load_error = state.public(error)
        log.error("%s", error)


# --- the app -------------------------------------------------------------------------------------
def create_app(settings: Settings, retriever: Retriever | None = None) -> FastAPI:
    """An app serving `settings.bundle`; pass a loaded `retriever` to be ready at once (else it loads in the background)."""
    faiss.omp_set_num_threads(settings.threads)
    metrics = ServiceMetrics()
    admin_token, feedback_token = check_tokens(settings)  # SettingsError for a token under 32 characters
    state = ServiceState(settings=settings, metrics=metrics, admin_token=admin_token, feedback_token=feedback_token)
    auth_failures = FailureThrottle(settings.admin_max_failures, settings.admin_failure_window_s)
    feedback_rate = RateLimiter(settings.feedback_rate_per_s, settings.feedback_burst)
    bundle_root = Path(settings.bundle_root)
    if retriever is not None:
        state.install(retriever)
    batcher: RecommendBatcher | LoopBatcher | None = None
    if settings.batching and settings.batch_runner == "loop":
        batcher = LoopBatcher(settings.batch_max_size, settings.batch_max_excluded, settings.batch_min_shared,
                              metrics.batch_size.observe)
    elif settings.batching:
        batcher = RecommendBatcher(settings.batch_max_size, settings.batch_window_ms / 1e3, settings.batch_max_excluded,
                                   settings.batch_min_shared, settings.threads, metrics.batch_size.observe)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            state.feedback = FeedbackLog(settings.feedback_db, synchronous=settings.synchronous)
        except FeedbackError as error:
            log.error("%s; POST /v1/feedback will answer 503", error)
        tasks = []
        if state.retriever is None:
            tasks.append(asyncio.create_task(_initial_load(state)))
        if settings.sync_dir is not None:
            tasks.append(asyncio.create_task(_follow_reloads(state)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            if batcher is not None:
                await run_in_threadpool(batcher.close)
            if state.feedback is not None:
                await run_in_threadpool(state.feedback.close)

    # The HTML /docs and /redoc pages load Swagger UI / ReDoc from a CDN: never served. The schema
    # itself is, unless settings.docs is off (`--no-docs`).
    app = FastAPI(title="prefengine serving", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/openapi.json" if settings.docs else None,
                  description="Recommendations from an exported prefengine bundle (ONNX towers + faiss).")
    app.state.service = state
    admin_bearer = HTTPBearer(auto_error=False, scheme_name="adminToken",
                              description=f"the token in the server's {settings.admin_token_env}")
    feedback_bearer = HTTPBearer(auto_error=False, scheme_name="feedbackToken",
                                 description=f"the token in the server's {settings.feedback_token_env}, when set")

    @app.exception_handler(QueryError)
    async def query_error(request: Request, error: QueryError) -> JSONResponse:
        return JSONResponse({"detail": safe_text(str(error), 2000)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the input as is, and NaN or a lone surrogate cannot be encoded (a 500).
        return JSONResponse({"detail": safe_validation_errors(error.errors())}, status_code=422)

    def authorize(request: Request, credentials: HTTPAuthorizationCredentials | None, token: str) -> None:
        """401 unless the bearer token is `token`; 429 for an address with too many recent failures."""
        client = client_address(request.client)
        wait = auth_failures.retry_after(client)
        if wait is not None:
            metrics.auth_throttled.inc()
            raise HTTPException(429, f"too many failed tokens from this address; retry in {math.ceil(wait)} s",
                                headers={"Retry-After": str(math.ceil(wait))})
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, token.encode()):
            auth_failures.failed(client)
            metrics.auth_failures.inc()
            raise HTTPException(401, "a valid 'Authorization: Bearer <token>' header is required",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.post("/v1/recommend", response_model=RecommendResponse, responses={422: {"model": ErrorResponse}, **ERRORS})
    async def recommend(body: RecommendRequest) -> RecommendResponse:
        """Top-k items. Who the query is, first that applies: a known `user_id`; a `profile` (bundles with a
        personality ranker graph; fallback "profile"); `recent_items` (fallback "recent_items"); `preferences`
        alone (Mender bundles; fallback "preferences"); else training popularity (fallback "popularity").
        `scorer` says what ranked the items: TIGER/Mender bundles generate them by beam search from the
        history (and, for Mender, the stated `preferences`); a profile goes through the ranker graph; other
        queries through the embedding towers and faiss. Fields a bundle cannot read are ignored with a
        `warnings` entry; names a profile uses that the model does not know are a 422."""
        retriever = state.ready()
        filters = body.filters
        profile = None
        if body.profile is not None:
            profile = Profile(traits=body.profile.traits.model_dump(exclude_none=True),
                              demographics=body.profile.demographics, tastes=body.profile.tastes)
        query = Query(
            user_id=body.user_id, recent_items=body.recent_items, k=body.k, exclude_seen=body.exclude_seen,
            include_categories=filters.include_categories, exclude_categories=filters.exclude_categories,
            exclude_items=filters.exclude_items, profile=profile, preferences=body.preferences,
            comparisons=None if body.comparisons is None else [c.model_dump() for c in body.comparisons])
        if retriever.generative is not None:
            # Beam search takes milliseconds of ONNX Runtime (which releases the GIL): off the event loop,
            # in parallel threads rather than the batcher's one.
            ranking = await run_in_threadpool(retriever.recommend, query)
        elif batcher is not None:
            ranking = await batcher.recommend(retriever, query)
        else:
            ranking = retriever.recommend(query)
        if ranking.fallback is not None:
            metrics.fallbacks.labels(ranking.fallback).inc()
        data = retriever.data
        items = [RecommendedItem(item_id=data.item_ids[i], score=float(s), title=data.titles[i],
                                 category=data.categories[i]) for i, s in zip(ranking.items.tolist(), ranking.scores)]
        return RecommendResponse(user_id=body.user_id, user_known=ranking.user_known, fallback=ranking.fallback,
                                 scorer=ranking.scorer, items=items, bundle_version=data.version,
                                 model=str(data.manifest["model"].get("name", "")), warnings=ranking.warnings)

    @app.post("/v1/feedback", response_model=FeedbackResponse,
              responses={422: {"model": ErrorResponse}, **AUTH_ERRORS, **ERRORS})
    async def feedback(body: FeedbackRequest, request: Request,
                       credentials: HTTPAuthorizationCredentials | None = Depends(feedback_bearer)) -> FeedbackResponse:
        """Append events to the event log; the response is sent only after they are committed. With a
        feedback token configured, writers send it as a bearer token. Each client address may post
        `feedback_rate_per_s` events per second (429 beyond). An item the served bundle does not know is a
        422 (or, with feedback_unknown_items: flag, stored flagged); unknown users are stored and counted."""
        if state.feedback_token:
            authorize(request, credentials, state.feedback_token)
        client = client_address(request.client)
        wait = feedback_rate.take(client, len(body.events))
        if wait is not None:
            metrics.feedback_throttled.inc()
            raise HTTPException(429, f"feedback rate limit: {settings.feedback_rate_per_s:g} events/s per client "
                                     f"address; retry in {math.ceil(wait)} s",
                                headers={"Retry-After": str(math.ceil(wait))})
        if state.feedback is None:
            raise HTTPException(503, "the feedback log is unavailable")
        retriever = state.retriever
        if retriever is None:
            raise HTTPException(503, "no bundle is loaded yet to check the feedback's item ids against")
        item_known = [e.item_id in retriever.item_index for e in body.events]
        unknown = [e.item_id for e, known in zip(body.events, item_known) if not known]
        if unknown and settings.feedback_unknown_items == "reject":
            metrics.feedback_unknown_items.labels("rejected").inc(len(unknown))
            shown = ", ".join(repr(i) for i in sorted(set(unknown))[:10])
            raise HTTPException(422, f"{len(unknown)} event(s) name items the served bundle does not know: {shown}")
        now = int(time.time())
        events = [Event(e.user_id, e.item_id, e.kind, e.value, now if e.timestamp is None else e.timestamp,
                        client=client, user_known=e.user_id in retriever.user_index, item_known=known)
                  for e, known in zip(body.events, item_known)]
        try:
            ids = await asyncio.wrap_future(state.feedback.append(events, retriever.data.version))
        except FeedbackError as error:
            raise HTTPException(503, str(error)) from None
        for event in events:
            metrics.feedback_events.labels(event.kind).inc()
        if unknown:
            metrics.feedback_unknown_items.labels("flagged").inc(len(unknown))
        unknown_users = sum(not event.user_known for event in events)
        if unknown_users:
            metrics.feedback_unknown_users.inc(unknown_users)
        return FeedbackResponse(accepted=len(ids), event_ids=ids)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorResponse}})
    async def readyz() -> dict:
        retriever = state.ready()
        return {"status": "ready", "bundle_version": retriever.data.version}

    @app.get("/metrics", response_class=Response)
    async def prometheus_metrics() -> Response:
        payload, content_type = metrics.exposition()
        return Response(payload, media_type=content_type)

    @app.get("/v1/models", response_model=ModelsResponse, responses={503: {"model": ErrorResponse}})
    async def models() -> ModelsResponse:
        retriever = state.ready()
        data = retriever.data
        manifest = data.manifest
        generative = None
        if retriever.generative is not None:
            spec = retriever.generative.spec
            generative = {key: spec[key] for key in ("variant", "beam_size", "max_history", "max_preferences")}
        return ModelsResponse(models=[ModelInfo(
            name=str(manifest["model"].get("name", "")), kind=str(manifest["model"].get("kind", "")),
            bundle_version=data.version, created_at=manifest["created_at"], n_items=data.n_items,
            n_users=len(data.user_ids), embedding_dim=data.dim,
            index={"kind": manifest["index"].get("kind"), "params": manifest["index"].get("params", {})},
            metrics={str(k): float(v) for k, v in manifest["metrics"].items()
                     if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)},
            query_kinds=retriever.query_kinds,
            profile=retriever.ranker.encoder.describe() if retriever.ranker is not None else None,
            generative=generative,
            recommended_comparisons=(retriever.placement.recommended_comparisons
                                     if retriever.placement is not None else None))])

    @app.post("/v1/admin/reload", response_model=ReloadResponse,
              responses={422: {"model": ErrorResponse}, **AUTH_ERRORS, **ERRORS})
    async def reload(request: Request, body: ReloadRequest | None = None,
                     credentials: HTTPAuthorizationCredentials | None = Depends(admin_bearer)) -> ReloadResponse:
        """Load a bundle beside the current one, validate manifest and checksums, then swap atomically.
        `bundle` names a directory inside the server's bundle root. A bundle that fails validation, or a
        path outside the root, is rejected (422) and the current one keeps serving."""
        if not state.admin_token:
            raise HTTPException(403, f"reload is disabled: set the environment variable {settings.admin_token_env} "
                                     "to a token before starting the server")
        authorize(request, credentials, state.admin_token)
        current = state.retriever
        still = f"still serving {current.data.version if current else 'nothing'}"
        if body is not None and body.bundle:
            try:
                bundle = resolve_bundle_request(bundle_root, body.bundle)
            except BundlePathError as error:
                metrics.reloads.labels("rejected").inc()
                raise HTTPException(422, f"bundle rejected, {still}: {error}") from None
        else:
            bundle = current.data.path if current else Path(settings.bundle)
        started = time.perf_counter()
        async with state.reload_lock:
            try:
                retriever = await run_in_threadpool(_load, settings, bundle)
            except BundleError as error:
                metrics.reloads.labels("rejected").inc()
                raise HTTPException(422, f"bundle rejected, {still}: {state.public(error)}") from None
            except Exception as error:  # noqa: BLE001 - whatever a bundle makes the loaders raise, the old one serves
                metrics.reloads.labels("rejected").inc()
                log.exception("reload of %s failed", bundle)
                raise HTTPException(422, f"bundle rejected, {still}: bundle {public_name(bundle, bundle_root)} "
                                         f"cannot be loaded ({type(error).__name__})") from None
            previous = state.install(retriever)
            _publish_reload(settings, retriever)
            published = _published(settings)
            if published is not None:
                state.seen_sync_mtime = published[0]
        metrics.reloads.labels("accepted").inc()
        log.info("reloaded %s -> %s", previous, retriever.data.version)
        return ReloadResponse(previous_version=previous, bundle_version=retriever.data.version,
                              bundle=public_name(retriever.data.path, bundle_root), seconds=time.perf_counter() - started)

    known = frozenset(route.path for route in app.routes)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s)
    app.add_middleware(MetricsMiddleware, metrics=metrics, known_paths=known)  # outermost: sees 413s too
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn workers (`serving.app:create_app_from_env`, factory=True): settings from the environment."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    # Load before serving: the workers share one listening socket, and a worker still loading would
    # take connections and answer them 503 while another already says ready.
    return create_app(settings, _load(settings, _bundle_to_load(settings)))
