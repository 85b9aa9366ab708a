"""The one door into the SDK: a canary that fails with a sentence when an `elevenlabs` upgrade
removes a private attribute voicelab relies on, and a guard that nothing else reaches past a
public surface (of the SDK, or of a Call)."""

from __future__ import annotations

import ast
import asyncio
import time
from pathlib import Path

import pytest

from voicelab.harness import sdk
from voicelab.harness.connection import initiation_data
from voicelab.spec.errors import SdkError

from ..conftest import ROOT


async def _nothing(*_args) -> None:  # noqa: ANN002
    return None


def open_one(dataset):
    async def build():
        return sdk.open_conversation(sdk.client("http://127.0.0.1:9", None), "chargeback",
                                     initiation_data(dataset.request("anna-double-charge")), audio=None,
                                     on_agent_response=_nothing, on_user_transcript=_nothing, on_disconnect=_nothing)
    return asyncio.run(build())


def test_the_installed_sdk_has_every_private_attribute_voicelab_uses(dataset):
    conversation = open_one(dataset)
    sdk.check(conversation)  # the canary: fails on an SDK upgrade that renames one
    assert set(sdk.PRIVATE) == {"_get_wss_url", "_conversation_id", "_task", "_ws", "_handle_message"}


@pytest.mark.parametrize("missing", sorted(sdk.PRIVATE))
def test_a_missing_private_attribute_is_named_with_the_sdk_version(dataset, missing):
    conversation = open_one(dataset)
    if missing in vars(conversation):
        delattr(conversation, missing)
    else:  # a method: hide it on a subclass
        conversation.__class__ = type("Renamed", (type(conversation),), {missing: property(
            lambda self: (_ for _ in ()).throw(AttributeError(missing)))})
    with pytest.raises(SdkError) as err:
        sdk.check(conversation)
    message = str(err.value)
    assert f"AsyncConversation.{missing}" in message and f"elevenlabs {sdk.sdk_version()}" in message
    assert "pip install" in message


def private_reads(path: Path) -> list[str]:
    """`obj._name` where obj is not self/cls (namedtuple's public `_replace` aside)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and node.attr != "_replace"
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    return found


#: Outside sdk.py, the one private call allowed: PortAudio's device rescan (sounddevice has no public one).
PORTAUDIO = {"voicelab/audio/sounddevice.py": {"sd._terminate", "sd._initialize"}}


def test_only_sdk_py_reads_private_attributes_of_other_objects():
    files = [p for folder in ("voicelab", "benchmarks", "scripts", "tests") for p in (ROOT / folder).rglob("*.py")
             if p != ROOT / "voicelab" / "harness" / "sdk.py" and p != Path(__file__)]
    offenders = [hit for path in files for hit in private_reads(path)
                 if hit.split()[-1] not in PORTAUDIO.get(str(path.relative_to(ROOT)), set())]
    assert not offenders, offenders


def test_an_agent_turn_is_stamped_when_it_arrived_not_when_the_client_got_round_to_it(dataset, local_backend):
    """A busy client (here: still handling the first message) must not charge its own delay to
    the agent: the answer, due 0.1 s after the caller spoke, is handled 0.6 s later but stamped
    at its arrival."""
    server = local_backend(latency_s=0.1)
    seen: list[tuple[float | None, float]] = []

    async def call() -> float:
        conversation: list = []

        async def on_agent(_text: str) -> None:
            seen.append((sdk.received_at(conversation[0]), time.monotonic()))
            if len(seen) == 1:
                await asyncio.sleep(0.6)  # the client is slow with the greeting

        conversation.append(sdk.open_conversation(
            sdk.client(server.base_url, None), "chargeback", initiation_data(dataset.request("anna-double-charge")),
            audio=None, on_agent_response=on_agent, on_user_transcript=_nothing, on_disconnect=_nothing))
        await conversation[0].start_session()
        while not seen:
            await asyncio.sleep(0.01)
        sent = time.monotonic()
        await conversation[0].send_user_message("Sorry, what do you mean?")  # answered without a tool call
        while len(seen) < 2:
            await asyncio.sleep(0.01)
        await sdk.close(conversation[0])
        return sent

    sent = asyncio.run(call())
    arrived, handled = seen[1]
    assert handled - sent > 0.45  # the SDK only got to the answer after the slow greeting
    assert arrived is not None and 0.09 < arrived - sent < 0.35  # but it came in ~0.1 s after
