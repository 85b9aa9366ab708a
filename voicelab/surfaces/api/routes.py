"""The REST service's routes, guards and error answers (FastAPI); the work is in service.py.

Guards, outermost first: a body larger than `max_body_bytes` is refused (413) before anything
reads it; `/api/*` needs `Authorization: Bearer $VOICELAB_API_KEY` when a key is set, and a
service reached on a non-loopback address without a key answers nothing but 403. Every error,
whatever raised it, is one `ErrorBody` JSON shape with a readable `detail`.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voicelab.spec.errors import (
    BackendError,
    ConfigError,
    DatasetError,
    InvalidField,
    MissingDependency,
    ReportError,
    RunNotFound,
    RunStoreError,
    StoreNotWritable,
    UsageError,
    VoiceLabError,
)
from voicelab.spec.version import __version__
from voicelab.surfaces.api.schemas import RUN_ID_PATTERN as ID_PATTERN
from voicelab.surfaces.api.schemas import (
    ConversationAccepted,
    ConversationCreate,
    ConversationResponse,
    ConversationStartRequest,
    ConversationStatus,
    ErrorBody,
    FieldError,
    RunCreate,
    RunStatus,
)
from voicelab.surfaces.api.service import Busy, Service, ServiceSettings, loopback

log = logging.getLogger("voicelab.surfaces.api")

DESCRIPTION = """\
Place calls to ElevenLabs agents and run voicelab test runs from other systems.

* `POST /api/conversation/start`: the original conversation service; waits for the call and
  returns its transcript.
* `POST /api/conversations`: the same call in the background (202, then `GET` it, or receive it
  at `callback_url`).
* `/api/runs`: batches and experiments of simulated calls, their progress, report and results.

When `VOICELAB_API_KEY` is set, every `/api` request needs `Authorization: Bearer <key>`.
Errors are always `{"status", "error", "detail", "fields"}`.
"""

#: Documented on every route that can answer them.
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing or wrong bearer key"},
    413: {"model": ErrorBody, "description": "request body too large"},
    422: {"model": ErrorBody, "description": "invalid request: the field and the fix are named"},
}
NOT_CONFIGURED: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "a setting the call needs is missing (the detail says which)"}}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "no such id"}}
BUSY: dict[int | str, dict[str, Any]] = {
    429: {"model": ErrorBody, "description": "more work than the service takes now (Retry-After says when to "
          "try again)"}}
STORE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "a setting the call needs is missing (not_configured), or the run "
          "store cannot be written (store_unavailable): the detail says which"}}
ERROR_NAMES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "too_large", 422: "invalid_request",
               429: "too_many_requests", 500: "internal_error", 502: "backend_error", 503: "not_configured"}

#: Ids in paths: plain names (never paths), no longer than a file name may be.
RunIdParam = Annotated[str, PathParam(pattern=ID_PATTERN, max_length=128, description="a run id")]
CallIdParam = Annotated[str, PathParam(pattern=ID_PATTERN, max_length=255,
                                       description="a call id (call-...) or a conversation id (conv_...)")]


def error_response(status: int, detail: str, fields: list[FieldError] | None = None,
                   headers: dict[str, str] | None = None, error: str | None = None) -> JSONResponse:
    body = ErrorBody(status=status, error=error or ERROR_NAMES.get(status, "error"), detail=detail,
                     fields=fields or [])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


# --------------------------------------------------------------------------- guards (plain ASGI)


class Guard:
    """Body size limit, bearer key and the loopback rule, before FastAPI sees the request."""

    def __init__(self, app: ASGIApp, holder: dict[str, Any]) -> None:
        self.app = app
        self.holder = holder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        config: ServiceSettings | None = self.holder.get("config")
        if config is None:  # not started (a lifespan failure); uvicorn answers nothing then anyway
            await error_response(503, "the service is starting")(scope, receive, send)
            return
        server_host = (scope.get("server") or ("127.0.0.1", 0))[0]
        if not config.api_key and not loopback(str(server_host)):
            await error_response(403, "this service is reachable beyond this machine but has no key: set "
                                 "VOICELAB_API_KEY and restart it, or bind it to 127.0.0.1")(scope, receive, send)
            return
        if config.api_key and scope["path"].startswith("/api/") and not _authorized(scope, config.api_key):
            await error_response(401, "missing or wrong bearer key: send the header Authorization: Bearer "
                                 "<the service's VOICELAB_API_KEY>",
                                 headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        body, too_large = await _read_body(receive, config.max_body_bytes, scope)
        if too_large:
            await error_response(413, f"the request body is larger than {config.max_body_bytes} bytes "
                                 "(VOICELAB_API_MAX_BODY_BYTES)")(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # then the disconnect, when it comes

        await self.app(scope, replay, send)


def _authorized(scope: Scope, key: str) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())
    return False


async def _read_body(receive: Receive, limit: int, scope: Scope) -> tuple[bytes, bool]:
    """The whole body, or (b"", True) as soon as it passes `limit` (a declared length is
    believed first, so a huge upload is refused before it is read)."""
    for name, value in scope.get("headers", []):
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            return b"", True
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), False


# --------------------------------------------------------------------------- errors


def _field_errors(exc: RequestValidationError) -> list[FieldError]:
    fields: list[FieldError] = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "path", "[key]")]
        where = ".".join(loc) or "body"
        kind = err.get("type", "")
        message = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
        if not loc and kind in ("model_attributes_type", "dict_type", "missing"):
            message = "must be a JSON object (send Content-Type: application/json)"
        elif kind == "missing":
            message = "is required"
        elif kind == "json_invalid":
            where, message = "body", f"is not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})"
        elif kind == "string_too_short":
            message = "may not be empty"
        elif kind == "extra_forbidden":
            message = "is not an option here: check its spelling"
        elif kind == "string_pattern_mismatch" and loc[:1] == ["variables"]:
            message = "is not a variable name: letters, digits and _, as the agent's {{name}}"
        elif kind == "string_pattern_mismatch" and loc[-1:] in (["run_id"], ["call_id"]):
            message = ("must be a plain name: letters, digits, '.', '_' and '-', starting with a letter or digit "
                       "(no paths)")
        if all(f.field != where for f in fields):
            fields.append(FieldError(field=where, message=message))
    return fields


def _status_of(exc: VoiceLabError) -> int:
    if isinstance(exc, StoreNotWritable):
        return 503
    if isinstance(exc, RunNotFound):
        return 404
    if isinstance(exc, RunStoreError):
        return 409
    if isinstance(exc, UsageError | DatasetError):
        return 422
    if isinstance(exc, ConfigError | MissingDependency):
        return 503
    if isinstance(exc, BackendError):
        return 502
    if isinstance(exc, ReportError):
        return 500
    return 500


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = _field_errors(exc)
        return error_response(422, "; ".join(f"{f.field}: {f.message}" for f in fields), fields)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code in (404, 405) and detail in ("Not Found", "Method Not Allowed"):
            detail = (f"no route {request.method} {request.url.path}"
                      + (" (this path takes other methods)" if exc.status_code == 405 else "")
                      + ": the routes are listed at /docs")
        return error_response(exc.status_code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(VoiceLabError)
    async def voicelab_error(_: Request, exc: VoiceLabError) -> JSONResponse:
        fields = [FieldError(field=exc.field, message=exc.problem)] if isinstance(exc, InvalidField) else []
        error = "store_unavailable" if isinstance(exc, StoreNotWritable) else None
        return error_response(_status_of(exc), str(exc), fields, error=error)

    @app.exception_handler(Busy)
    async def busy(_: Request, exc: Busy) -> JSONResponse:
        return error_response(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return error_response(500, f"the service failed unexpectedly ({exc.__class__.__name__}); its log has the "
                              "details")


# --------------------------------------------------------------------------- docs (offline)

#: Swagger UI and ReDoc, shipped with the package (static/README.md names versions and source),
#: so /docs and /redoc work on a machine that cannot reach a CDN.
STATIC = Path(__file__).parent / "static"
#: The docs pages may load nothing from elsewhere (ReDoc's bundle would fetch its vendor's logo).
DOCS_POLICY = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
               "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:"}


def _install_docs(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        page = get_swagger_ui_html(openapi_url="/openapi.json", title="voicelab API",
                                   swagger_js_url="/static/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger-ui.css",
                                   swagger_favicon_url="/static/favicon-32x32.png",
                                   swagger_ui_parameters={"validatorUrl": None})
        page.headers.update(DOCS_POLICY)
        return page

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        page = get_redoc_html(openapi_url="/openapi.json", title="voicelab API",
                              redoc_js_url="/static/redoc.standalone.js",
                              redoc_favicon_url="/static/favicon-32x32.png", with_google_fonts=False)
        page.headers.update(DOCS_POLICY)
        return page


# --------------------------------------------------------------------------- the app


def create_app(config: ServiceSettings | None = None) -> FastAPI:
    """The service as an ASGI app; `config` defaults to the VOICELAB_API_* settings, read when
    the server starts (so importing `voicelab.surfaces.api.app` does nothing)."""
    holder: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        settings = config or ServiceSettings.from_env()
        settings.check()
        service = Service(settings)
        await run_in_threadpool(service.start)
        holder["config"], holder["service"] = settings, service
        service.spawn(service.keep_storing())
        service.spawn(service.deliver_owed())
        try:
            yield
        finally:
            await service.cancel_calls()
            await run_in_threadpool(service.close)

    app = FastAPI(title="voicelab", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.add_middleware(Guard, holder=holder)
    _install_error_handlers(app)
    _install_docs(app)

    def service() -> Service:
        return holder["service"]

    @app.get("/health", tags=["service"], summary="Is the service up, can it store results (no key needed)")
    async def health() -> dict[str, Any]:
        """`status: degraded` when the run store cannot be written (its `error` names the path)
        or holds results it could not store yet; `calls`: in flight under the cap, waiting for
        a slot, and pending (accepted, not finished) against the limit."""
        s = service()
        store = await run_in_threadpool(s.store_health)
        return {"status": "ok" if store["writable"] and not store["unstored"] else "degraded",
                "version": __version__, "backend": holder["config"].backend, "store": store,
                "calls": s.calls_health()}

    @app.get("/api/personas", tags=["service"], summary="The personas and agents calls and runs can name",
             responses=ERRORS)
    async def personas() -> dict[str, list[dict[str, str]]]:
        ds = service().dataset
        assert ds is not None
        return {"personas": [{"id": p.id, "name": p.name, "agent": p.agent, "summary": p.summary}
                             for p in ds.personas.values()],
                "agents": [{"id": a.id, "name": a.name} for a in ds.agents.values()]}

    @app.post("/api/conversation/start", response_model=ConversationResponse, tags=["conversations"],
              summary="Place a call to the chargeback agent and wait for its transcript",
              responses={**ERRORS, **BUSY, **STORE})
    async def conversation_start(body: ConversationStartRequest) -> ConversationResponse:
        """The original conversation service: the agent calls the person about the disputed charge
        (dynamic variables `first_name`, `last_name`, `phone_number`, `product_name`,
        `chargeback_reason`). On the local backend a cooperative callee built from the request
        answers; on the hosted platform the platform dials `phone_number`. A failed call is
        `status: failed` with its partial transcript and the reason."""
        s = service()
        request = s.request_for(body)
        await run_in_threadpool(s.preflight, request)
        return await s.call(request)

    @app.post("/api/conversations", status_code=202, response_model=ConversationAccepted, tags=["conversations"],
              summary="Place a call in the background", responses={**ERRORS, **BUSY, **STORE})
    async def conversation_create(body: ConversationCreate, response: Response) -> ConversationAccepted:
        """Answers at once with the call's id; `GET /api/conversations/{id}` follows it, and
        `callback_url` (if given) receives the finished call by POST, retried on failure. The
        agent's own dynamic variables must be given (by the request, or the persona): a missing
        one is refused here, before anything is placed. Accepted calls are journaled: a restarted
        service answers for them and delivers their callbacks."""
        s = service()
        request = s.request_for(body, persona_id=body.persona_id, agent_id=body.agent_id)
        await run_in_threadpool(s.preflight, request)
        job = await s.submit(request, str(body.callback_url) if body.callback_url else None)
        location = f"/api/conversations/{job.id}"
        response.headers["Location"] = location
        return ConversationAccepted(id=job.id, state=job.state, location=location)

    @app.get("/api/conversations/{call_id}", response_model=ConversationStatus, tags=["conversations"],
             summary="A background call's state and, once done, its transcript",
             responses={**ERRORS, **NOT_FOUND}, response_model_exclude_none=False)
    async def conversation_get(call_id: CallIdParam) -> ConversationStatus:
        found = await run_in_threadpool(service().conversation, call_id)
        if found is None:
            raise HTTPException(404, f"no call '{call_id}' placed by this service")
        return found

    @app.post("/api/runs", status_code=202, response_model=RunStatus, tags=["runs"],
              summary="Start a batch or an experiment", responses={**ERRORS, **NOT_CONFIGURED, **BUSY, **STORE,
                                                                   409: {"model": ErrorBody}})
    async def run_create(body: RunCreate, response: Response) -> RunStatus:
        """The options of `voicelab run` (personas, agent, repeats, ...) or, with `experiment`,
        of `voicelab experiment`. Answers once the run exists; its calls are placed in the
        background."""
        s = service()
        job = await run_in_threadpool(s.start_run, body)
        response.headers["Location"] = f"/api/runs/{job.run.run_id}"
        return await run_in_threadpool(s.run_status, job.run.run_id)

    @app.get("/api/runs", tags=["runs"], summary="Stored runs, newest last", responses=ERRORS)
    async def run_list() -> list[dict[str, str]]:
        from voicelab.lab.store import RunStore

        store = RunStore(service().config.runs_root)
        return [{"run_id": run_id, "link": f"/api/runs/{run_id}"} for run_id in store.list()]

    @app.get("/api/runs/{run_id}", response_model=RunStatus, tags=["runs"],
             summary="A run's progress and summary", responses={**ERRORS, **NOT_FOUND})
    async def run_get(run_id: RunIdParam) -> RunStatus:
        return await run_in_threadpool(service().run_status, run_id)

    @app.delete("/api/runs/{run_id}", response_model=RunStatus, tags=["runs"],
                summary="Cancel a run, as Ctrl+C does (what finished is kept; it can be resumed)",
                responses={**ERRORS, **NOT_FOUND})
    async def run_cancel(run_id: RunIdParam) -> RunStatus:
        return await run_in_threadpool(service().cancel_run, run_id)

    @app.get("/api/runs/{run_id}/report", response_class=FileResponse, tags=["runs"],
             summary="The run's HTML report (built on first request)",
             responses={**ERRORS, **NOT_FOUND, 200: {"content": {"text/html": {}}}})
    async def run_report(run_id: RunIdParam) -> FileResponse:
        path = await run_in_threadpool(service().report, run_id)
        return FileResponse(path, media_type="text/html")

    @app.get("/api/runs/{run_id}/calls", tags=["runs"], summary="The run's results, one JSON object per line",
             responses={**ERRORS, **NOT_FOUND, 200: {"content": {"application/x-ndjson": {}}}})
    async def run_calls(run_id: RunIdParam) -> Response:
        lines = await run_in_threadpool(service().call_lines, run_id)
        return Response("".join(lines), media_type="application/x-ndjson")

    return app


__all__ = ["create_app"]
