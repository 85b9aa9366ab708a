"""The local backend's agents over REST: get, list, create, PATCH, duplicate, summaries and
branches, as the platform answers them (bodies through the SDK's own response models).

Agents live in the backend's own `agents` dict, which every conversation reads when it starts:
an agent created or changed here is what the next conversation gets (agent_config.py says which
pushed fields act). What a client pushed is kept as pushed and laid over what GET agent reports
for the spec, so GET returns it. Each agent has one branch, its main one; versions and other
branches do not exist offline.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

import pydantic
from aiohttp import web

from voicelab.local.agent_config import applied, blank_spec, checked_body, deep_merge
from voicelab.local.history import dump
from voicelab.local.rest import ACCESS_INFO, Unprocessable, error_response, field, query_bool, query_int, read_json
from voicelab.local.sdk_models import sdk_model
from voicelab.spec.models import AgentSpec

log = logging.getLogger(__name__)

#: The parts of an agent's body a client pushes and GET returns as pushed.
PUSHED = ("conversation_config", "platform_settings", "workflow")
VOICE_ID = "local-espeak"


def new_agent_id() -> str:
    """Production-like id: agent_ plus 28 lowercase base32-ish characters."""
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    return "agent_" + "".join(alphabet[b % 32] for b in secrets.token_bytes(28))


def main_branch_id(agent_id: str) -> str:
    """The id of an agent's one branch (stable: the same agent always has the same one)."""
    return "agtbrch_" + hashlib.sha256(agent_id.encode()).hexdigest()[:28]


def agent_not_found() -> web.Response:
    return error_response(404, "agent_not_found", "Agent not found")


def branch_not_found(branch_id: str) -> web.Response:
    return error_response(404, "branch_not_found", f"Branch {branch_id!r} not found (the local backend keeps one "
                                                   "branch per agent, its main one: GET .../branches names it)")


class AgentsStore:
    """The REST side of the backend's agents. `body_of` is GET agent's body for a spec as the
    websocket enforces it (the server's `agent_body`)."""

    def __init__(self, agents: dict[str, AgentSpec], body_of: Callable[[AgentSpec], dict[str, Any]]) -> None:
        self.agents = agents  # the backend's own dict: conversations starting later see every change
        self.body_of = body_of
        #: Per agent, what clients pushed (PUSHED parts, merged patch over patch).
        self.pushed: dict[str, dict[str, Any]] = {}
        #: Per agent, the fields pushed as null (nested dicts, None leaves): "not given", so not laid
        #: over the agent, but GET shows them as null where it has no value, as the platform shows
        #: its null defaults (the official CLI warns of every pushed field GET leaves out).
        self.nulls: dict[str, dict[str, Any]] = {}
        self.tags: dict[str, list[str]] = {}
        now = int(time.time())
        self.created: dict[str, int] = dict.fromkeys(agents, now)
        self.updated: dict[str, int] = dict.fromkeys(agents, now)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/convai/agents", self.list_agents)
        app.router.add_post("/v1/convai/agents/create", self.create)
        app.router.add_get("/v1/convai/agents/summaries", self.summaries)  # before /{agent_id}
        app.router.add_get("/v1/convai/agents/{agent_id}", self.get)
        app.router.add_patch("/v1/convai/agents/{agent_id}", self.update)
        app.router.add_post("/v1/convai/agents/{agent_id}/duplicate", self.duplicate)
        app.router.add_get("/v1/convai/agents/{agent_id}/branches", self.branches)

    # ------------------------------------------------------------------ bodies

    def _times(self, agent_id: str) -> tuple[int, int]:
        now = int(time.time())
        return self.created.setdefault(agent_id, now), self.updated.setdefault(agent_id, now)

    def body(self, agent_id: str) -> dict[str, Any]:
        """GET agent: the spec as the websocket enforces it, with what clients pushed over it."""
        spec = self.agents[agent_id]
        body = self.body_of(spec)
        pushed = self.pushed.get(agent_id) or {}
        body = deep_merge(body, {k: v for k, v in pushed.items() if k in PUSHED})
        created, updated = self._times(agent_id)
        body.update(agent_id=agent_id, name=spec.name, tags=self.tags.get(agent_id, body.get("tags") or []),
                    branch_id=main_branch_id(agent_id), main_branch_id=main_branch_id(agent_id),
                    access_info=ACCESS_INFO)
        body["metadata"] = {**(body.get("metadata") or {}), "created_at_unix_secs": created,
                            "updated_at_unix_secs": updated}
        try:
            return _fill_nulls(dump(sdk_model("GetAgentResponseModel").model_validate(body)),
                               self.nulls.get(agent_id) or {})
        except pydantic.ValidationError as exc:  # a pushed request shape the response model reads differently
            log.warning("local backend: GET agent %s: the body does not validate as the SDK's response (%s); "
                        "returned as pushed", agent_id, exc.errors(include_url=False)[:1])
            return body

    def summary(self, agent_id: str) -> dict[str, Any]:
        """An agent as lists show it (AgentSummaryResponseModel)."""
        spec = self.agents[agent_id]
        pushed = self.pushed.get(agent_id) or {}
        created, updated = self._times(agent_id)
        voice = (((pushed.get("conversation_config") or {}).get("tts") or {}).get("voice_id")) or VOICE_ID
        archived = bool((pushed.get("platform_settings") or {}).get("archived"))
        return {"agent_id": agent_id, "name": spec.name, "voice_id": voice,
                "tags": self.tags.get(agent_id, ["voicelab-local"]), "created_at_unix_secs": created,
                "updated_at_unix_secs": updated, "access_info": ACCESS_INFO, "archived": archived}

    def store(self, agent_id: str, spec: AgentSpec, pushed: dict[str, Any], raw: Mapping[str, Any]) -> None:
        """A checked create / PATCH body: the spec it makes, what it pushed, its tags; and where
        `raw` (the body as sent) said null."""
        self.agents[agent_id] = applied(spec, pushed)
        kept = self.pushed.get(agent_id) or {}
        self.pushed[agent_id] = deep_merge(kept, {k: v for k, v in pushed.items() if k in PUSHED})
        self.nulls[agent_id] = deep_merge(self.nulls.get(agent_id) or {},
                                          _nulls({k: v for k, v in raw.items() if k in PUSHED}))
        if "tags" in pushed:
            self.tags[agent_id] = list(pushed["tags"])
        now = int(time.time())
        self.created.setdefault(agent_id, now)
        self.updated[agent_id] = now

    # ------------------------------------------------------------------ handlers

    def _missing(self, agent_id: str, branch: str | None) -> web.Response | None:
        """The platform's 404 for an agent or branch (only `main` exists here) that is not there."""
        if agent_id not in self.agents:
            return agent_not_found()
        if branch and branch != main_branch_id(agent_id):
            return branch_not_found(branch)
        return None

    async def get(self, request: web.Request) -> web.Response:
        agent_id = request.match_info["agent_id"]
        if (missing := self._missing(agent_id, request.query.get("branch_id"))) is not None:
            return missing
        return web.json_response(self.body(agent_id))

    async def create(self, request: web.Request) -> web.Response:
        raw = await read_json(request)
        pushed = checked_body(raw, create=True)
        agent_id = new_agent_id()
        self.store(agent_id, blank_spec(agent_id, pushed.get("name") or ""), pushed, raw)
        self.tags.setdefault(agent_id, [])
        return web.json_response(dump(sdk_model("CreateAgentResponseModel").model_validate({"agent_id": agent_id})))

    async def update(self, request: web.Request) -> web.Response:
        agent_id = request.match_info["agent_id"]
        if (missing := self._missing(agent_id, request.query.get("branch_id"))) is not None:
            return missing
        raw = await read_json(request)
        pushed = checked_body(raw, create=False)
        self.store(agent_id, self.agents[agent_id], pushed, raw)
        return web.json_response(self.body(agent_id))

    async def duplicate(self, request: web.Request) -> web.Response:
        """A new agent with the source's config (its spec, flow included, and what was pushed to it)."""
        source_id = request.match_info["agent_id"]
        source = self.agents.get(source_id)
        if source is None:
            return agent_not_found()
        name = field(await read_json(request, optional=True), "name", str)
        agent_id = new_agent_id()
        self.agents[agent_id] = source.model_copy(update={"id": agent_id, "name": name or source.name}, deep=True)
        self.pushed[agent_id] = deep_merge({}, self.pushed.get(source_id) or {})
        self.nulls[agent_id] = deep_merge({}, self.nulls.get(source_id) or {})
        self.tags[agent_id] = list(self.tags.get(source_id, ["voicelab-local"]))
        self.created[agent_id] = self.updated[agent_id] = int(time.time())
        return web.json_response(dump(sdk_model("CreateAgentResponseModel").model_validate({"agent_id": agent_id})))

    async def list_agents(self, request: web.Request) -> web.Response:
        page_size = query_int(request, "page_size", low=1, high=100, default=30) or 30
        search = (request.query.get("search") or "").lower()
        tags = set(request.query.getall("tags", []))
        archived = query_bool(request, "archived") if "archived" in request.query else None
        summaries = [self.summary(a) for a in sorted(self.agents)]
        summaries = [s for s in summaries
                     if (search in s["name"].lower() or search in s["agent_id"])
                     and (not tags or tags & set(s["tags"]))
                     and (archived is None or s["archived"] == archived)]
        start = 0
        if cursor := request.query.get("cursor"):
            ids = [s["agent_id"] for s in summaries]
            if cursor not in ids:
                raise Unprocessable("query", "cursor", f"invalid cursor {cursor!r}")
            start = ids.index(cursor) + 1
        chunk = summaries[start:start + page_size]
        has_more = start + page_size < len(summaries)
        body = {"agents": chunk, "has_more": has_more, "next_cursor": chunk[-1]["agent_id"] if has_more else None}
        return web.json_response(dump(sdk_model("GetAgentsPageResponseModel").model_validate(body)))

    async def summaries(self, request: web.Request) -> web.Response:
        """Summaries of the agents asked for; an unknown one is a failure entry, not an error."""
        out = {}
        for agent_id in request.query.getall("agent_ids", []):
            if agent_id in self.agents:
                out[agent_id] = dump(sdk_model("AgentSummaryBatchSuccessfulResponseModel").model_validate(
                    {"status": "success", "data": self.summary(agent_id)}))
            else:
                out[agent_id] = dump(sdk_model("BatchFailureResponseModel").model_validate(
                    {"status": "failure", "error_code": 404, "error_status": "agent_not_found",
                     "error_message": "Agent not found"}))
        return web.json_response(out)

    async def branches(self, request: web.Request) -> web.Response:
        agent_id = request.match_info["agent_id"]
        if agent_id not in self.agents:
            return agent_not_found()
        query_bool(request, "include_archived")
        query_bool(request, "include_commit_status")
        limit = query_int(request, "limit", low=1, high=100, default=100) or 100
        created, updated = self._times(agent_id)
        main = {"id": main_branch_id(agent_id), "name": "Main", "agent_id": agent_id,
                "description": "The agent's main branch", "created_at": created, "last_committed_at": updated,
                "is_archived": False, "protection_status": "writer_perms_required", "access_info": ACCESS_INFO,
                "current_live_percentage": 100.0, "draft_exists": False, "commits_ahead": 0, "commits_behind": 0}
        body = {"results": [main][:limit], "meta": {"total": 1, "page": 0, "page_size": limit}}
        return web.json_response(dump(sdk_model("ListResponseAgentBranchSummary").model_validate(body)))


def _nulls(value: Mapping[str, Any]) -> dict[str, Any]:
    """The null leaves of a pushed body (objects only; lists replace whole, nulls and all)."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        if item is None:
            out[key] = None
        elif isinstance(item, Mapping) and (inner := _nulls(item)):
            out[key] = inner
    return out


def _fill_nulls(body: dict[str, Any], nulls: Mapping[str, Any]) -> dict[str, Any]:
    """`body` with a null wherever `nulls` has one and the body has no value."""
    for key, item in nulls.items():
        if item is None:
            body.setdefault(key, None)
        elif isinstance(body.get(key), dict):
            _fill_nulls(body[key], item)
        elif key not in body:
            body[key] = _fill_nulls({}, item)
    return body
