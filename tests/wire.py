"""One raw-websocket client for the tests that must see or send what no SDK shows or sends:
malformed frames, frames the SDK tidies, the exact events a server lets out.

    ws = open_conversation(server.base_url, first=init(dynamic_variables={...}), agent_id="cases")
    frames = read_until(ws, is_agent)             # answers client tools as the SDKs' ClientTools do
    frames = until_closed(ws)                     # everything up to the server's close
    ws.close_code, ws.close_reason
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from .conftest import tool_result_for
from .contracts import RAW_CLIENT

#: The bundled chargeback agent's variables for Anna (a conversation it accepts).
ANNA = {"first_name": "Anna", "last_name": "Kowalska", "phone_number": "+48601234567",
        "product_name": "Premium Gym Membership", "chargeback_reason": "duplicate charge"}


def init(text_only: bool = True, **extra) -> str:
    """The first frame, `conversation_initiation_client_data` (Anna's variables unless given)."""
    return json.dumps({"type": "conversation_initiation_client_data", "dynamic_variables": ANNA,
                       "conversation_config_override": {"text_only": True} if text_only else {}, **extra})


def open_conversation(base_url: str, first: str | bytes | None = None, text_only: bool = True, *,
                      agent_id: str = "chargeback") -> ClientConnection:
    """A conversation with `agent_id`, its first frame sent (`init()` unless given)."""
    ws = connect(base_url.replace("http", "ws") + f"/v1/convai/conversation?agent_id={agent_id}", open_timeout=5,
                 max_size=16 * 1024 * 1024, user_agent_header=RAW_CLIENT)
    ws.send(first if first is not None else init(text_only))
    return ws


def read_until(ws: ClientConnection, predicate: Callable[[dict], bool], timeout: float = 5.0, *,
               answer_tools: bool = True) -> list[dict]:
    """Frames until one matches; raises ConnectionClosed if the server closes first. A client
    tool call is answered (`answer_tools`), as a client that implements its tools would."""
    seen, deadline = [], time.time() + timeout
    while time.time() < deadline:
        frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.time())))
        seen.append(frame)
        if answer_tools and (answer := tool_result_for(frame)) is not None:
            ws.send(answer)
        if predicate(frame):
            return seen
    raise TimeoutError(seen)


def until_closed(ws: ClientConnection, timeout: float = 5.0) -> list[dict]:
    """Every frame until the server closes the conversation (then close_code / close_reason)."""
    seen = []
    with contextlib.suppress(ConnectionClosed):
        while True:
            seen.append(json.loads(ws.recv(timeout=timeout)))
    return seen


def is_agent(frame: dict) -> bool:
    return frame["type"] == "agent_response"
