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
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from elevenlabs.types import GetAgentResponseModel

from ..datasets import DEFAULT_AGENTS, load_agents
from ..errors import BackendError
from ..models import AgentSpec, Persona, pick_language
from ..speech import TranscriberPool
from .faults import Faults
from .history import History, dump
from .history import error_response as _error
from .platform import PersonaCallers, Platform
from .session import Session, SessionConfig

log = logging.getLogger(__name__)


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
        ping_interval_s: float = 5.0,
        personas: dict[str, Persona] | None = None,
        require_key: str | None = None,
        voice_silence_s: float = 0.5,
    ) -> None:
        self.agents = agents if isinstance(agents, dict) else load_agents(agents)
        #: When set: REST needs this xi-api-key, conversations need a signed URL.
        self.require_key = require_key
        #: Voice mode: this much quiet after speech ends the caller's turn.
        self.voice_silence_s = voice_silence_s
        self._signatures: dict[str, float] = {}
        self._transcribers: TranscriberPool | None = None
        self.host, self.port = host, port
        self.latency_s = latency_s
        self.ping_interval_s = ping_interval_s
        #: Benchmarks: called with the perf_counter of every agent audio chunk sent.
        self.on_agent_audio: Callable[[float], None] | None = None
        self.faults = Faults()
        self.history = History()
        #: Agent-testing and outbound calls, answered by the personas (voicelab's scripted caller)
        #: and judged with the conditions the client sent.
        self.platform = Platform(self.agents, self.history, PersonaCallers(personas or {}),
                                 latency_s=lambda: self.latency_s)
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
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/v1/convai/conversation", self._conversation)
        app.router.add_get("/v1/convai/conversation/get-signed-url", self._signed_url)
        app.router.add_get("/v1/convai/conversation/get_signed_url", self._signed_url)
        app.router.add_get("/v1/convai/agents/{agent_id}", self._get_agent)
        app.router.add_get("/v1/convai/conversations", self._list_conversations)
        app.router.add_get("/v1/convai/conversations/{conversation_id}", self._get_conversation)
        self.platform.routes(app)
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
                return _error(401, "needs_authorization", "Neither authorization header nor xi-api-key received")
            if not secrets.compare_digest(key, self.require_key):
                return _error(401, "invalid_api_key", "Invalid API key")
        return await handler(request)

    def transcribers(self) -> TranscriberPool:
        """Speech recognition workers, started with the first voice conversation."""
        if self._transcribers is None:
            self._transcribers = TranscriberPool()
        return self._transcribers

    def signature_ok(self, token: str | None) -> bool:
        """A signed URL's token is valid for 15 minutes and for one conversation."""
        expires = self._signatures.pop(token or "", None)
        return expires is not None and expires > time.time()

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
            latency_s=self.latency_s, ping_interval_s=self.ping_interval_s, voice_silence_s=self.voice_silence_s,
            check_signature=self.signature_ok if self.require_key else None, on_agent_audio=self.on_agent_audio)

    async def _conversation(self, request: web.Request) -> web.StreamResponse:
        # `convai`: the subprotocol ElevenLabs' JavaScript client offers (and needs selected)
        ws = web.WebSocketResponse(autoping=True, max_msg_size=16 * 1024 * 1024, protocols=("convai",))
        await ws.prepare(request)
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)

        def abort() -> None:
            if request.transport is not None:
                request.transport.abort()

        try:
            await Session(self.session_config(), request.query, ws, abort).run()
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

    async def _signed_url(self, request: web.Request) -> web.Response:
        agent_id = request.query.get("agent_id")
        if not agent_id:
            return web.json_response({"detail": [{"loc": ["query", "agent_id"], "msg": "field required",
                                                  "type": "value_error.missing"}]}, status=422)
        if agent_id not in self.agents:
            return _error(404, "agent_not_found", "Agent not found")
        ws_base = self.base_url.replace("http://", "ws://", 1)
        token = secrets.token_urlsafe(24)
        self._signatures[token] = time.time() + 15 * 60
        return web.json_response({"signed_url": f"{ws_base}/v1/convai/conversation?agent_id={agent_id}"
                                                f"&conversation_signature={token}"})

    async def _get_agent(self, request: web.Request) -> web.Response:
        agent = self.agents.get(request.match_info["agent_id"])
        if agent is None:
            return _error(404, "agent_not_found", "Agent not found")
        now = int(time.time())
        body: dict[str, Any] = {
            "agent_id": agent.id,
            "name": agent.name,
            "conversation_config": {
                "agent": {"first_message": pick_language(agent.first_message, agent.language),
                          "language": agent.language, "prompt": {"prompt": agent.prompt}},
                "tts": {"agent_output_audio_format": "pcm_16000"},
                "asr": {"user_input_audio_format": "pcm_16000"},
                "turn": {"turn_timeout": agent.flow.silence.after_s},
                "conversation": {"text_only": False},
            },
            "metadata": {"created_at_unix_secs": now, "updated_at_unix_secs": now},
            "platform_settings": {
                "auth": {"enable_auth": False},
                "overrides": {"conversation_config_override": {
                    "agent": {"first_message": True, "language": True, "prompt": {"prompt": True}},
                    "conversation": {"text_only": True}}},
            },
            "tags": ["voicelab-local"],
        }
        return web.json_response(dump(GetAgentResponseModel.model_validate(body)))

    async def _list_conversations(self, request: web.Request) -> web.Response:
        try:
            page_size = int(request.query.get("page_size", "30"))
        except ValueError:
            page_size = 0
        if not 1 <= page_size <= 100:
            return web.json_response({"detail": [{"loc": ["query", "page_size"], "type": "value_error",
                                                  "msg": "page_size must be between 1 and 100"}]}, status=422)
        return web.json_response(self.history.page(agent_id=request.query.get("agent_id"),
                                                   page_size=page_size, cursor=request.query.get("cursor")))

    async def _get_conversation(self, request: web.Request) -> web.Response:
        record = self.history.get(request.match_info["conversation_id"])
        if record is None:
            return _error(404, "conversation_not_found", "Conversation not found")
        return web.json_response(record.to_response())

