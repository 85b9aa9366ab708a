"""The SDK's REST models (`elevenlabs.types`), loaded when the first request needs one.

Every REST answer of the local backend is validated by the SDK's own response model, and every
pushed body by its request model, so a client never sees a shape the SDK would refuse. Importing
those models is most of the backend's start-up, though (GET agent's and the workflow models pull
in some 400 modules, ~0.5 s), and serving a conversation needs none of them: a one-call run
would pay for them and never use them. So the REST handlers ask for a model by its name here, and
it is imported with the first request that needs it (`elevenlabs.types` loads each name's module
on demand). tests/test_house.py keeps the backend's module import free of them.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module

import pydantic


@cache
def sdk_model(name: str) -> type[pydantic.BaseModel]:
    """The SDK's model class `elevenlabs.types.<name>` (imported on first use, then kept)."""
    model = getattr(import_module("elevenlabs.types"), name)
    assert isinstance(model, type) and issubclass(model, pydantic.BaseModel), name
    return model
