"""Server (webhook) tools, called by the local backend as the platform calls them: a real HTTP
request to the URL in the agent spec, with the conversation's dynamic variables filled into the
URL and the headers (`secret__` variables into headers only), the arguments as a JSON body or as
query parameters, and the tool's response timeout.

A webhook's failure is the tool's error, never the conversation's: an unreachable host, a 5xx, a
hang or a body that is not JSON each become one `is_error` result the flow branches on.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from voicelab.local.messages import load_json
from voicelab.spec.datasets import render
from voicelab.spec.models import Tool

#: Most of a webhook's answer the agent reads (the rest is cut off, as a context budget would).
MAX_BODY = 64 * 1024
BODY_METHODS = ("POST", "PUT", "PATCH")


async def call_webhook(tool: Tool, args: dict[str, Any], variables: dict[str, str],
                       secrets: dict[str, str] | None = None) -> tuple[bool, Any]:
    """(succeeded, result): the response's JSON (or text) for a 2xx, else a readable error."""
    assert tool.webhook is not None
    hook = tool.webhook
    url = render(hook.url, variables)
    headers = {name: render(value, {**variables, **(secrets or {})}) for name, value in hook.headers.items()}
    body = args if hook.method in BODY_METHODS else None
    query = None if hook.method in BODY_METHODS else {k: str(v) for k, v in args.items()}
    timeout = aiohttp.ClientTimeout(total=tool.response_timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http, \
                http.request(hook.method, url, json=body, params=query, headers=headers,
                             allow_redirects=False) as response:
            raw = await response.content.read(MAX_BODY)
            text = raw.decode("utf-8", errors="replace")
            if response.status >= 400:
                return False, f"HTTP {response.status} from {tool.name}: {text[:500]}"
            try:
                return True, load_json(text)
            except ValueError:  # TooDeep too: a text answer it is
                return True, text  # the platform hands a text answer to the agent as it is
    except TimeoutError:
        return False, f"{tool.name} did not answer within {tool.response_timeout_s:g} s"
    except (aiohttp.ClientError, OSError, ValueError) as exc:  # ValueError: a URL aiohttp cannot use
        return False, f"{tool.name} could not be reached: {exc}"
