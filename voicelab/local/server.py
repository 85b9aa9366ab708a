"""The embedded ElevenLabs-compatible backend: REST and websocket on one port of 127.0.0.1.

The unchanged `elevenlabs` SDK reaches it through `base_url` (http:// for REST, the same
host:port as ws:// for conversations). Start it in-process with one call:

    with LocalBackend() as backend:          # ephemeral port, agents from datasets/agents
        client = ElevenLabs(base_url=backend.base_url, api_key="local")

or as its own process with `voicelab serve`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from voicelab.local.agents_store import AgentsStore, branch_not_found, main_branch_id
from voicelab.local.caller_agent import CALLER_AGENT_ID, caller_agent_spec
from voicelab.local.faults import Faults
from voicelab.local.history import History, dump, new_conversation_id
from voicelab.local.messages import MAX_FRAME_BYTES
from voicelab.local.platform import PersonaCallers, Platform
from voicelab.local.rest import Unprocessable, error_response, json_errors, query_int, read_json
from voicelab.local.sdk_models import sdk_model
from voicelab.local.session import Session, SessionConfig, reported_events
from voicelab.local.testing_api import TestingApi
from voicelab.local.tools_store import ToolsStore
from voicelab.spec.datasets import DEFAULT_AGENTS, load_agents
from voicelab.spec.errors import BackendError
from voicelab.spec.models import AgentSpec, Persona, Tool, pick_language

if TYPE_CHECKING:
    from voicelab.audio.speech import TranscriberPool

log = logging.getLogger(__name__)


def _timeout_secs(seconds: float, low: int, high: int) -> int:
    """A tool's timeout as the platform's schema allows it (whole seconds, client 1-120, webhook
    5-300): a spec may say less (a test of a hanging tool), which the conversation keeps; GET agent
    shows the nearest value the platform accepts."""
    return min(high, max(low, math.ceil(seconds)))


def tool_body(tool: Tool) -> dict[str, Any]:
    """A tool of the spec in the platform's shape (`prompt.tools[]`, validated by GET agent's model
    and by the platform's OpenAPI document)."""
    body: dict[str, Any] = {"type": tool.type, "name": tool.name, "description": tool.description or tool.name}
    schema = {"type": "object", "required": list(tool.required), "properties": {
        name: {"type": p.type, "description": p.description, **({"enum": p.enum} if p.enum else {})}
        for name, p in tool.parameters.items()}}
    if tool.type == "client":
        body |= {"expects_response": tool.expects_response,
                 "response_timeout_secs": _timeout_secs(tool.response_timeout_s, 1, 120)}
        if tool.parameters:
            body["parameters"] = schema
    elif tool.type == "webhook":
        assert tool.webhook is not None
        hook = tool.webhook
        api: dict[str, Any] = {"url": hook.url, "method": hook.method, "request_headers": dict(hook.headers)}
        if tool.parameters:
            if hook.method in ("POST", "PUT", "PATCH"):
                api["request_body_schema"] = schema
            else:
                api["query_params_schema"] = {"properties": schema["properties"], "required": schema["required"]}
        body |= {"response_timeout_secs": _timeout_secs(tool.response_timeout_s, 5, 300), "api_schema": api}
    else:
        params: dict[str, Any] = {"system_tool_type": tool.name}
        if tool.name == "transfer_to_number":
            params["transfers"] = [{"transfer_destination": {"type": "phone", "phone_number": t.phone_number},
                                    "phone_number": t.phone_number, "condition": t.condition}
                                   for t in tool.transfers]
        body["params"] = params
    return body


class LocalBackend:
    """An ElevenLabs-compatible server for the agent specs in `agents`.

    `latency_s` is the agent's response time, from the end of the caller's turn to its answer
    (ground truth for latency metrics); `faults` arms injected failures; `history` holds the
    conversations served.
    """

    def __init__(
        self,
        agents: dict[str, AgentSpec] | str | Path = DEFAULT_AGENTS,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_s: float = 0.0,
        barge_in_s: float = 0.0,
        ping_interval_s: float = 5.0,
        personas: dict[str, Persona] | None = None,
        require_key: str | None = None,
        voice_silence_s: float = 0.5,
        history_limit: int = 1000,
    ) -> None:
        self.agents = dict(agents) if isinstance(agents, dict) else load_agents(agents)
        #: The caller agent of `caller: agent` calls, unless a spec of that id is served instead.
        self.agents.setdefault(CALLER_AGENT_ID, caller_agent_spec())
        #: When set: REST needs this xi-api-key, conversations need a signed URL.
        self.require_key = require_key
        #: Voice mode: this much quiet after speech ends the caller's turn.
        self.voice_silence_s = voice_silence_s
        #: Signed URLs' and conversation tokens' signatures -> when they expire.
        self._signatures: dict[str, float] = {}
        #: A conversation token's conversation id (its response names it before the call starts).
        self._reserved: dict[str, str] = {}
        self._transcribers: TranscriberPool | None = None
        self.host, self.port = host, port
        self.latency_s = latency_s
        #: The agent's barge-in reaction time (ground truth for stop-latency metrics).
        self.barge_in_s = barge_in_s
        self.ping_interval_s = ping_interval_s
        #: Benchmarks: called with the perf_counter of every agent audio chunk sent.
        self.on_agent_audio: Callable[[float], None] | None = None
        self.faults = Faults()
        #: The conversations served; past `history_limit` the oldest finished ones are dropped.
        self.history = History(limit=history_limit)
        #: Agent-testing and outbound calls, answered by the personas (voicelab's scripted caller)
        #: and judged with the conditions the client sent.
        self.platform = Platform(self.agents, self.history, PersonaCallers(personas or {}),
                                 latency_s=lambda: self.latency_s)
        #: Agents created, changed and listed over REST (the same dict: a change reaches the next call).
        self.agents_store = AgentsStore(self.agents, self.agent_body)
        self.tools = ToolsStore()
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sessions: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        if not self.port:
            raise BackendError("the local backend is not started; call start() first")
        return f"http://{self.host}:{self.port}"

    def app(self) -> web.Application:
        app = web.Application(middlewares=[json_errors, self._auth], client_max_size=MAX_FRAME_BYTES)
        app.router.add_get("/v1/convai/conversation", self._conversation)
        app.router.add_get("/v1/convai/conversation/get-signed-url", self._signed_url)
        app.router.add_get("/v1/convai/conversation/get_signed_url", self._signed_url)
        app.router.add_get("/v1/convai/conversation/token", self._token)
        self.agents_store.routes(app)
        self.tools.routes(app)
        app.router.add_get("/v1/convai/conversations", self._list_conversations)
        app.router.add_get("/v1/convai/conversations/{conversation_id}", self._get_conversation)
        app.router.add_get("/v1/convai/conversations/{conversation_id}/summary", self._conversation_summary)
        app.router.add_delete("/v1/convai/conversations/{conversation_id}", self._delete_conversation)
        app.router.add_get("/v1/convai/conversations/{conversation_id}/audio", self._conversation_audio)
        app.router.add_post("/v1/convai/conversations/{conversation_id}/feedback", self._feedback)
        self.platform.routes(app)
        TestingApi(self.platform).routes(app)
        app.on_shutdown.append(self._close_sessions)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Injected HTTP faults first; then, with require_key, every REST call needs the key (the
        websocket checks its signature instead)."""
        fault = self.faults.take_http(request.path) if request.path != "/v1/convai/conversation" else None
        if fault is not None:
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            body = {"detail": {"type": "rate_limit_error", "code": "concurrent_limit_exceeded",
                               "status": "too_many_concurrent_requests",
                               "message": "Too many concurrent requests (injected fault)"}}
            return web.json_response(body, status=fault.status, headers=headers)
        if self.require_key and request.path != "/v1/convai/conversation":
            key = request.headers.get("xi-api-key")
            if not key:
                return error_response(401, "needs_authorization",
                                      "Neither authorization header nor xi-api-key received")
            if not secrets.compare_digest(key, self.require_key):
                return error_response(401, "invalid_api_key", "Invalid API key")
        return await handler(request)

    def transcribers(self) -> TranscriberPool:
        """Speech recognition workers, started with the first voice conversation (and imported
        then: text calls never load the audio side)."""
        if self._transcribers is None:
            from voicelab.audio.speech import TranscriberPool

            self._transcribers = TranscriberPool()
        return self._transcribers

    def signature_ok(self, token: str | None) -> bool:
        """A signed URL's token (or a conversation token) is valid for 15 minutes and for one
        conversation."""
        expires = self._signatures.pop(token or "", None)
        return expires is not None and expires > time.time()

    def reserved_conversation(self, token: str | None) -> str | None:
        """The conversation id a conversation token promised (once), or None."""
        return self._reserved.pop(token or "", None)

    def _sign(self, conversation_id: str | None = None) -> str:
        """A new signature, valid for 15 minutes; expired ones are dropped."""
        now = time.time()
        for old in [t for t, expires in self._signatures.items() if expires <= now]:
            self._signatures.pop(old, None)
            self._reserved.pop(old, None)
        token = secrets.token_urlsafe(24)
        self._signatures[token] = now + 15 * 60
        if conversation_id is not None:
            self._reserved[token] = conversation_id
        return token

    async def astart(self) -> str:
        """Start on the running event loop; returns the base URL."""
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            raise BackendError(f"cannot listen on {self.host}:{self.port}: {exc.strerror} "
                               "(fix: choose another --port, or 0 for any free port)") from None
        self.port = self._runner.addresses[0][1]
        return self.base_url

    async def astop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._transcribers is not None:
            self._transcribers.close()
            self._transcribers = None
        self.history.close()

    def start(self) -> str:
        """Start in a background thread (for notebooks and tests); returns the base URL."""
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self.astart())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                started.set()
                return
            started.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self.astop())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="voicelab-local-backend", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self.base_url

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> LocalBackend:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _close_sessions(self, app: web.Application) -> None:
        for task in list(self._sessions):
            task.cancel()

    # ------------------------------------------------------------------ websocket

    def session_config(self) -> SessionConfig:
        """What a conversation starting now gets (settings changed later do not reach it)."""
        return SessionConfig(
            agents=self.agents, history=self.history, faults=self.faults, transcribers=self.transcribers,
            latency_s=self.latency_s, barge_in_s=self.barge_in_s, ping_interval_s=self.ping_interval_s,
            voice_silence_s=self.voice_silence_s,
            check_signature=self.signature_ok if self.require_key else None, on_agent_audio=self.on_agent_audio,
            reserved_conversation=self.reserved_conversation)

    async def _conversation(self, request: web.Request) -> web.StreamResponse:
        # `convai`: the subprotocol ElevenLabs' JavaScript client offers (and needs selected)
        # no permessage-deflate: it is invisible to clients, and on loopback it only costs both
        # sides CPU per frame (at 256 conversations, ~3 ms of the p95 turn latency)
        ws = web.WebSocketResponse(autoping=True, max_msg_size=16 * 1024 * 1024, protocols=("convai",),
                                   compress=False)
        if not ws.can_prepare(request).ok:
            return error_response(400, "websocket_required", "This endpoint speaks the websocket protocol: "
                                                              "connect with a websocket client")
        await ws.prepare(request)
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)

        try:
            await Session(self.session_config(), request.query, ws, request.transport).run()
        except asyncio.CancelledError:
            await ws.close(code=1001, message=b"Server shutting down")
        except Exception:  # a bug here must still end the call the way production does
            log.exception("local backend session crashed")
            await ws.close(code=1011, message=b"unknown_websocket_crash")
        finally:
            if task is not None:
                self._sessions.discard(task)
        return ws

    # ------------------------------------------------------------------ REST

    def _conversation_agent(self, request: web.Request) -> str | web.Response:
        """The agent a signed URL or a token is asked for, or the platform's refusal."""
        agent_id = request.query.get("agent_id")
        if not agent_id:
            raise Unprocessable("query", "agent_id", "field required", "missing")
        if agent_id not in self.agents:
            return error_response(404, "agent_not_found", "Agent not found")
        branch = request.query.get("branch_id")
        if branch and branch != main_branch_id(agent_id):  # never silently the main branch instead
            return branch_not_found(branch)
        return agent_id

    async def _signed_url(self, request: web.Request) -> web.Response:
        agent_id = self._conversation_agent(request)
        if isinstance(agent_id, web.Response):
            return agent_id
        ws_base = self.base_url.replace("http://", "ws://", 1)
        return web.json_response({"signed_url": f"{ws_base}/v1/convai/conversation?agent_id={agent_id}"
                                                f"&conversation_signature={self._sign()}"})

    async def _token(self, request: web.Request) -> web.Response:
        """A conversation token. On the platform it opens a WebRTC (LiveKit) room, which does not
        exist offline; here it opens the websocket instead, as a signed URL's signature does
        (`?agent_id=...&conversation_signature=<token>`, or `&token=<token>`): 15 minutes, one
        conversation, which gets the conversation id the response names."""
        agent_id = self._conversation_agent(request)
        if isinstance(agent_id, web.Response):
            return agent_id
        conversation_id = new_conversation_id()
        body = {"token": self._sign(conversation_id), "conversation_id": conversation_id}
        return web.json_response(dump(sdk_model("TokenResponseModel").model_validate(body)))

    def agent_body(self, agent: AgentSpec) -> dict[str, Any]:
        """GET agent: the spec the websocket enforces, nothing it would contradict."""
        now = int(time.time())
        platform = agent.platform
        allowed = set(platform.allowed_overrides)
        silence = agent.flow.silence
        body: dict[str, Any] = {
            "agent_id": agent.id,
            "name": agent.name,
            "conversation_config": {
                "agent": {"first_message": pick_language(agent.first_message, agent.language),
                          "language": agent.language,
                          "prompt": {"prompt": agent.prompt, "tools": [tool_body(t) for t in agent.tools]},
                          "dynamic_variables": {"dynamic_variable_placeholders": dict(platform.placeholders)}},
                "tts": {"agent_output_audio_format": "pcm_16000"},
                "asr": {"user_input_audio_format": "pcm_16000", "keywords": list(platform.asr_keywords)},
                "turn": {"turn_timeout": silence.after_s,
                         "silence_end_call_timeout": (silence.after_s * (silence.end_after + 1)
                                                      if silence.end_after is not None else -1)},
                "conversation": {"text_only": platform.text_only, "max_duration_seconds": platform.max_duration_s,
                                 "client_events": reported_events(agent)},
            },
            "metadata": {"created_at_unix_secs": now, "updated_at_unix_secs": now},
            "platform_settings": {
                "auth": {"enable_auth": bool(self.require_key)},
                "overrides": {"conversation_config_override": {
                    "agent": {"first_message": "first_message" in allowed, "language": "language" in allowed,
                              "prompt": {"prompt": "prompt" in allowed, "llm": "llm" in allowed}},
                    "tts": {"voice_id": "voice_id" in allowed},
                    "conversation": {"text_only": "text_only" in allowed}},
                    "custom_llm_extra_body": False},
                "evaluation": {"criteria": [{"id": c.id, "name": c.id, "type": "prompt",
                                             "conversation_goal_prompt": c.conversation_goal_prompt}
                                            for c in platform.evaluation_criteria]},
            },
            "tags": ["voicelab-local"],
        }
        return dump(sdk_model("GetAgentResponseModel").model_validate(body))

    async def _list_conversations(self, request: web.Request) -> web.Response:
        call_successful = request.query.get("call_successful")
        if call_successful not in (None, "success", "failure", "unknown"):
            raise Unprocessable("query", "call_successful", "must be success, failure or unknown", "enum")
        try:
            page = self.history.page(
                page_size=query_int(request, "page_size", low=1, high=100, default=30) or 30,
                cursor=request.query.get("cursor"), agent_id=request.query.get("agent_id"),
                call_successful=call_successful,
                after=query_int(request, "call_start_after_unix"), before=query_int(request, "call_start_before_unix"),
                min_duration=query_int(request, "call_duration_min_secs"),
                max_duration=query_int(request, "call_duration_max_secs"))
        except ValueError as exc:
            raise Unprocessable("query", "cursor", str(exc)) from None
        return web.json_response(page)

    async def _get_conversation(self, request: web.Request) -> web.Response:
        record = self.history.get(request.match_info["conversation_id"])
        if record is None:
            return error_response(404, "conversation_not_found", "Conversation not found")
        return web.json_response(record.to_response())

    async def _conversation_summary(self, request: web.Request) -> web.Response:
        record = self.history.get(request.match_info["conversation_id"])
        if record is None:
            return error_response(404, "conversation_not_found", "Conversation not found")
        limit = query_int(request, "max_messages", low=1, high=200, default=40) or 40
        return web.json_response(record.to_summary_response(limit))

    async def _delete_conversation(self, request: web.Request) -> web.Response:
        if not self.history.delete(request.match_info["conversation_id"]):
            return error_response(404, "conversation_not_found", "Conversation not found")
        return web.json_response({})

    async def _conversation_audio(self, request: web.Request) -> web.Response:
        record = self.history.get(request.match_info["conversation_id"])
        if record is None:
            return error_response(404, "conversation_not_found", "Conversation not found")
        if not record.has_audio:
            return error_response(404, "conversation_audio_not_found", "This conversation has no audio")
        from voicelab.local.recording import render_transcript

        if record.recording is not None:
            record.recording.flush()  # on the loop that writes it
            audio = await asyncio.to_thread(record.recording.wav)
        else:
            audio = await asyncio.to_thread(render_transcript, record.transcript,
                                            str(record.client_data.get("language") or "en"))
        return web.Response(body=audio, content_type="audio/wav")

    async def _feedback(self, request: web.Request) -> web.Response:
        record = self.history.get(request.match_info["conversation_id"])
        if record is None:
            return error_response(404, "conversation_not_found", "Conversation not found")
        body = await read_json(request)
        score = body.get("feedback")
        if score not in ("like", "dislike", None):
            raise Unprocessable("body", "feedback", "must be 'like' or 'dislike'", "enum")
        record.feedback(score)
        return web.json_response({})
