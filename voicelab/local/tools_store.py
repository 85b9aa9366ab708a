"""The workspace's standalone tools over REST (`/v1/convai/tools`): create, list, get, PATCH and
delete, as the platform answers them (bodies through the SDK's ToolRequestModel and
ToolResponseModel).

Tools are kept and returned; the local backend calls an agent's tools from its spec's flow, so a
tool made here is called by no conversation (an agent pushed over REST has no flow), and its
usage stats stay at zero.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pydantic
from aiohttp import web

from voicelab.local.history import dump
from voicelab.local.rest import ACCESS_INFO, Unprocessable, error_response, query_int, read_json
from voicelab.local.sdk_models import sdk_model

#: The tool config union's members, by the `type` tag that picks one (the SDK's model names).
TOOL_TYPES = {"client": "Client", "webhook": "Webhook", "system": "System", "mcp": "Mcp"}


def checked_tool(body: dict[str, Any]) -> dict[str, Any]:
    """A tool create / PATCH body, checked by the SDK's ToolRequestModel: its tool_config (and
    response_mocks) as sent. Errors name the field of the member the `type` tag picks, as the
    platform's discriminated union does."""
    config = body.get("tool_config")
    if config is None:
        raise Unprocessable("body", "tool_config", "field required", "missing")
    if not isinstance(config, dict):
        raise Unprocessable("body", "tool_config", "must be an object", "model_attributes_type")
    kind = config.get("type")
    if kind not in TOOL_TYPES:
        raise Unprocessable("body", "tool_config.type", f"must be one of {', '.join(TOOL_TYPES)}",
                            "union_tag_invalid")
    try:
        parsed = sdk_model("ToolRequestModel").model_validate(body)
    except pydantic.ValidationError as exc:
        member = f"ToolRequestModelToolConfig_{TOOL_TYPES[kind]}"
        errors = []
        for error in exc.errors(include_url=False, include_input=False, include_context=False):
            loc = error["loc"]
            if loc[:1] != ("tool_config",):
                errors.append(error)  # response_mocks
            elif loc[1:2] == (member,):  # the member the tag picks; the others' errors say nothing
                errors.append({**error, "loc": ("tool_config", kind, *loc[2:])})
        raise Unprocessable.from_errors(errors, "body") from None
    return parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)


class ToolsStore:
    def __init__(self) -> None:
        #: tool id -> {"tool_config", "response_mocks"?, "created"}, oldest first.
        self.tools: dict[str, dict[str, Any]] = {}

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/convai/tools", self.list_tools)
        app.router.add_post("/v1/convai/tools", self.create)
        app.router.add_get("/v1/convai/tools/{tool_id}", self.get)
        app.router.add_patch("/v1/convai/tools/{tool_id}", self.update)
        app.router.add_delete("/v1/convai/tools/{tool_id}", self.delete)

    def body(self, tool_id: str) -> dict[str, Any]:
        tool = self.tools[tool_id]
        body = {"id": tool_id, "tool_config": tool["tool_config"], "access_info": ACCESS_INFO,
                "usage_stats": {"total_calls": 0, "avg_latency_secs": 0.0}}
        if tool.get("response_mocks") is not None:
            body["response_mocks"] = tool["response_mocks"]
        return dump(sdk_model("ToolResponseModel").model_validate(body))

    async def create(self, request: web.Request) -> web.Response:
        checked = checked_tool(await read_json(request))
        tool_id = "tool_" + secrets.token_hex(13)
        self.tools[tool_id] = {**checked, "created": time.time()}
        return web.json_response(self.body(tool_id))

    async def get(self, request: web.Request) -> web.Response:
        tool_id = request.match_info["tool_id"]
        if tool_id not in self.tools:
            return error_response(404, "tool_not_found", "Tool not found")
        return web.json_response(self.body(tool_id))

    async def update(self, request: web.Request) -> web.Response:
        """PATCH takes a whole tool config, as create does (ToolRequestModel)."""
        tool_id = request.match_info["tool_id"]
        if tool_id not in self.tools:
            return error_response(404, "tool_not_found", "Tool not found")
        checked = checked_tool(await read_json(request))
        self.tools[tool_id] = {**self.tools[tool_id], **checked}
        return web.json_response(self.body(tool_id))

    async def delete(self, request: web.Request) -> web.Response:
        if self.tools.pop(request.match_info["tool_id"], None) is None:
            return error_response(404, "tool_not_found", "Tool not found")
        return web.json_response({})

    async def list_tools(self, request: web.Request) -> web.Response:
        """Newest first (the platform's default sort); `search` is a name prefix, `types` the
        tool types to keep, `cursor` the id of the last tool seen."""
        page_size = query_int(request, "page_size", low=1, high=100, default=30) or 30
        search = request.query.get("search") or ""
        types = set(request.query.getall("types", []))
        ids = [t for t in sorted(self.tools, key=lambda t: self.tools[t]["created"], reverse=True)
               if str(self.tools[t]["tool_config"].get("name", "")).startswith(search)
               and (not types or self.tools[t]["tool_config"].get("type") in types)]
        start = 0
        if cursor := request.query.get("cursor"):
            if cursor not in ids:
                raise Unprocessable("query", "cursor", f"invalid cursor {cursor!r}")
            start = ids.index(cursor) + 1
        chunk = ids[start:start + page_size]
        has_more = start + page_size < len(ids)
        body = {"tools": [self.body(t) for t in chunk], "has_more": has_more,
                "next_cursor": chunk[-1] if has_more else None}
        return web.json_response(dump(sdk_model("ToolsResponseModel").model_validate(body)))
