"""The naive peer: what a quick script does with the bare ElevenLabs SDK, one thread per call.

    .venv/bin/python benchmarks/naive_peer.py URL CALLS THREADS

Places CALLS conversations with the benchmark agent (benchmarks/data/agents/bench.yaml) at a
local backend (`voicelab serve`), THREADS at once, each a plain SDK `Conversation` in its own
thread that answers every agent turn with "Answer." until the agent says goodbye. It stores
nothing and checks nothing: it is the floor a workbench should not fall behind. Prints one JSON
line: calls that ended, and the agent's response latency per answered turn (send → the agent's
`agent_response` handed over by the SDK) at p50 / p95, as voicelab measures it.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from elevenlabs import ElevenLabs
from elevenlabs.conversational_ai.conversation import Conversation


def main() -> None:
    url, calls, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    client = ElevenLabs(base_url=url, api_key=None)
    latencies: list[float] = []
    lock = threading.Lock()

    def one(_: int) -> bool:
        ended = threading.Event()
        box: dict = {}

        def on_agent(text: str) -> None:
            sent = box.pop("sent", None)
            if sent is not None:
                with lock:
                    latencies.append((time.monotonic() - sent) * 1000)
            if "goodbye" not in text.lower():
                box["sent"] = time.monotonic()
                box["conv"].send_user_message("Answer.")

        conv = Conversation(client, "bench", requires_auth=False, callback_agent_response=on_agent,
                            callback_disconnect=lambda *_: ended.set())
        box["conv"] = conv
        conv.start_session()
        done = ended.wait(120)
        conv.wait_for_session_end()
        return done

    with ThreadPoolExecutor(threads) as pool:
        ended = sum(pool.map(one, range(calls)))
    ordered = sorted(latencies) or [float("nan")]

    def pct(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))], 1)

    print(json.dumps({"calls": calls, "ended": ended, "turns": len(latencies), "p50_ms": pct(50), "p95_ms": pct(95)}))


if __name__ == "__main__":
    main()
