"""The local backend's REST plumbing, as the platform answers: every error is JSON with a
`detail` (`{"status", "message"}` for the platform's own errors, FastAPI's list of `{loc, msg,
type}` for validation), every malformed body a 4xx, and nothing a client sends a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from voicelab.local.messages import TooDeep, load_json

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: `access_info` of everything the local backend lists: one workspace, whose only user made it all.
ACCESS_INFO = {"is_creator": True, "creator_name": "voicelab", "creator_email": "local@voicelab.invalid",
               "role": "admin"}


class Unprocessable(Exception):
    """A request the platform's validation refuses (422); raised by the readers below."""

    def __init__(self, where: str, field: str, message: str, kind: str = "value_error") -> None:
        super().__init__(message)
        self.detail = [{"loc": [where, *field.split(".")] if field else [where], "msg": message, "type": kind}]

    @classmethod
    def from_errors(cls, errors: list[Any], where: str, *prefix: str) -> Unprocessable:
        """A pydantic validation's errors (the SDK's request models) as FastAPI's detail list,
        each `loc` under `where` and `prefix` (`["body", "conversation_config", "agent", ...]`)."""
        exc = cls(where, ".".join(prefix), "invalid")
        if errors:
            exc.detail = [{"loc": [where, *prefix, *e.get("loc", ())], "msg": str(e.get("msg")),
                           "type": str(e.get("type"))} for e in errors]
        return exc


def error_response(status: int, code: str, message: str) -> web.Response:
    """The platform's REST error body: {"detail": {"status": ..., "message": ...}}."""
    return web.json_response({"detail": {"status": code, "message": message}}, status=status)


async def read_json(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object body, or Unprocessable naming what is wrong with it. `optional`:
    a request without a body (all its fields optional) is `{}`."""
    text = await request.text()
    if optional and not text.strip():
        return {}
    try:
        body = load_json(text)
    except TooDeep as exc:
        raise Unprocessable("body", "", f"the body is {exc}", "json_invalid") from None
    except ValueError:
        raise Unprocessable("body", "", "the body is not valid JSON", "json_invalid") from None
    if not isinstance(body, dict):
        raise Unprocessable("body", "", "the body must be a JSON object", "model_attributes_type")
    return body


def field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], *, required: bool = False,
          default: Any = None) -> Any:
    """One body field of the expected type (bool is not an int here)."""
    if name not in body or body[name] is None:
        if required:
            raise Unprocessable("body", name, "field required", "missing")
        return default
    value = body[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(k.__name__.replace("dict", "object").replace("str", "string") for k in kinds)
        raise Unprocessable("body", name, f"must be {names}", "type_error")
    return value


def query_bool(request: web.Request, name: str, default: bool = False) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw.lower() not in ("true", "false", "1", "0"):
        raise Unprocessable("query", name, f"{name} must be a boolean", "bool_parsing")
    return raw.lower() in ("true", "1")


def query_int(request: web.Request, name: str, *, low: int | None = None, high: int | None = None,
              default: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Unprocessable("query", name, f"{name} must be an integer", "int_parsing") from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise Unprocessable("query", name, f"{name} must be between {low} and {high}")
    return value


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Routing errors and validation as JSON; an unexpected failure is logged and answered 500
    with a JSON detail (a bug in the backend, never the client's fault)."""
    try:
        return await handler(request)
    except Unprocessable as exc:
        return web.json_response({"detail": exc.detail}, status=422)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(exc.status, "error")
        message = {404: f"No route {request.method} {request.path}",
                   405: f"Method {request.method} is not allowed on {request.path}"}.get(exc.status, exc.reason)
        return web.json_response({"detail": {"status": code, "message": message}}, status=exc.status,
                                 headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"})
    except ConnectionResetError:  # the client went away mid-answer (its caller was stopped): nobody to tell
        log.debug("local backend: %s %s: the client closed the connection", request.method, request.path)
        return web.Response(status=499)  # never reaches it; aiohttp drops a write to a closed transport quietly
    except Exception:
        log.exception("local backend: %s %s failed", request.method, request.path)
        return web.json_response({"detail": {"status": "internal_error",
                                             "message": "The local backend failed on this request (a bug: "
                                                        "see its log)"}}, status=500)
