"""Agent-testing beyond create / get / run (platform.py): list, update, delete and summaries of
tests; list, rename and resubmit of test invocations, as the platform answers them (bodies
through the SDK's own response models). Folders do not exist locally: every test is in the root.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from voicelab.local.history import dump
from voicelab.local.platform import Platform, validate_test
from voicelab.local.rest import ACCESS_INFO, Unprocessable, error_response, field, query_int, read_json
from voicelab.local.sdk_models import sdk_model


def _page(ids: list[str], request: web.Request) -> tuple[list[str], bool]:
    """One page of `ids` after the `cursor` (the last id seen), `page_size` long (1..100, 30)."""
    page_size = query_int(request, "page_size", low=1, high=100, default=30) or 30
    start = 0
    if cursor := request.query.get("cursor"):
        if cursor not in ids:
            raise Unprocessable("query", "cursor", f"invalid cursor {cursor!r}")
        start = ids.index(cursor) + 1
    return ids[start:start + page_size], start + page_size < len(ids)


class TestingApi:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/convai/agent-testing", self.list_tests)
        app.router.add_post("/v1/convai/agent-testing/summaries", self.summaries)
        app.router.add_put("/v1/convai/agent-testing/{test_id}", self.update_test)
        app.router.add_delete("/v1/convai/agent-testing/{test_id}", self.delete_test)
        app.router.add_get("/v1/convai/test-invocations", self.list_invocations)
        app.router.add_patch("/v1/convai/test-invocations/{invocation_id}", self.rename_invocation)
        app.router.add_post("/v1/convai/test-invocations/{invocation_id}/resubmit", self.resubmit)

    # ------------------------------------------------------------------ tests

    def test_summary(self, test_id: str) -> dict[str, Any]:
        test = self.platform.tests[test_id]
        now = int(time.time())
        created, updated = self.platform.test_times.get(test_id, (now, now))
        return {"id": test_id, "name": test["name"], "type": test.get("type", "llm"), "entity_type": "test",
                "created_at_unix_secs": created, "last_updated_at_unix_secs": updated, "access_info": ACCESS_INFO,
                "folder_path": []}

    async def list_tests(self, request: web.Request) -> web.Response:
        """Newest first; `search` in the name, `types` to keep; folders: only the root exists."""
        tests = self.platform.tests
        search = (request.query.get("search") or "").lower()
        types = set(request.query.getall("types", []))
        folder = request.query.get("parent_folder_id")
        ids = sorted(tests, key=lambda t: self.platform.test_times.get(t, (0, 0))[0], reverse=True)
        ids = [t for t in ids if search in str(tests[t]["name"]).lower()
               and (not types or tests[t].get("type") in types) and folder in (None, "root")]
        chunk, has_more = _page(ids, request)
        body = {"tests": [self.test_summary(t) for t in chunk], "has_more": has_more,
                "next_cursor": chunk[-1] if has_more else None}
        return web.json_response(dump(sdk_model("GetTestsPageResponseModel").model_validate(body)))

    async def summaries(self, request: web.Request) -> web.Response:
        test_ids = field(await read_json(request), "test_ids", list, required=True)
        if not all(isinstance(t, str) for t in test_ids):
            raise Unprocessable("body", "test_ids", "must be a list of strings")
        if len(set(test_ids)) != len(test_ids):
            raise Unprocessable("body", "test_ids", "no duplicates allowed")
        body = {"tests": {t: self.test_summary(t) for t in test_ids if t in self.platform.tests}}
        return web.json_response(dump(sdk_model("GetTestsSummariesByIdsResponseModel").model_validate(body)))

    async def update_test(self, request: web.Request) -> web.Response:
        """PUT: the whole test anew (a body without `type` keeps the test's)."""
        test_id = request.match_info["test_id"]
        old = self.platform.tests.get(test_id)
        if old is None:
            return error_response(404, "test_not_found", "Test not found")
        body = await read_json(request)
        validate_test(body, default_type=str(old.get("type", "llm")))
        self.platform.tests[test_id] = {"type": old.get("type"), **body, "id": test_id}
        created = self.platform.test_times.get(test_id, (int(time.time()), 0))[0]
        self.platform.test_times[test_id] = (created, int(time.time()))
        return web.json_response(self.platform.tests[test_id])

    async def delete_test(self, request: web.Request) -> web.Response:
        test_id = request.match_info["test_id"]
        if self.platform.tests.pop(test_id, None) is None:
            return error_response(404, "test_not_found", "Test not found")
        self.platform.test_times.pop(test_id, None)
        return web.json_response({})

    # ------------------------------------------------------------------ invocations

    def invocation_summary(self, invocation: dict[str, Any]) -> dict[str, Any]:
        runs = invocation["test_runs"]
        count = {status: sum(1 for r in runs if r["status"] == status)
                 for status in ("pending", "passed", "failed", "cancelled")}
        names = list(dict.fromkeys(str(r.get("test_name")) for r in runs))
        return {"id": invocation["id"], "name": invocation.get("name"), "agent_id": invocation.get("agent_id"),
                "created_at_unix_secs": invocation["created_at"], "test_run_count": len(runs),
                "passed_count": count["passed"], "failed_count": count["failed"], "pending_count": count["pending"],
                "cancelled_count": count["cancelled"], "title": invocation.get("name") or ", ".join(names),
                "access_info": ACCESS_INFO, "repeat_count": invocation.get("repeat_count", 1),
                "cancelled": invocation.get("cancelled", False)}

    async def list_invocations(self, request: web.Request) -> web.Response:
        """Newest first; by `agent_id`, `test_id` (an invocation that ran it), `search` in the
        title, `start_time` / `end_time` (unix seconds of creation)."""
        agent_id, test_id = request.query.get("agent_id"), request.query.get("test_id")
        search = (request.query.get("search") or "").lower()
        after, before = query_int(request, "start_time"), query_int(request, "end_time")
        items = sorted(self.platform.invocations.values(), key=lambda i: i["created_at"], reverse=True)
        keep = [i["id"] for i in items
                if (not agent_id or i.get("agent_id") == agent_id)
                and (not test_id or any(r["test_id"] == test_id for r in i["test_runs"]))
                and (after is None or i["created_at"] >= after) and (before is None or i["created_at"] <= before)
                and search in self.invocation_summary(i)["title"].lower()]
        chunk, has_more = _page(keep, request)
        body = {"results": [self.invocation_summary(self.platform.invocations[i]) for i in chunk],
                "has_more": has_more, "next_cursor": chunk[-1] if has_more else None,
                "meta": {"total": len(keep), "page_size": len(chunk)}}
        return web.json_response(dump(sdk_model("GetTestInvocationsPageResponseModel").model_validate(body)))

    async def rename_invocation(self, request: web.Request) -> web.Response:
        invocation = self.platform.invocations.get(request.match_info["invocation_id"])
        if invocation is None:
            return error_response(404, "invocation_not_found", "Test invocation not found")
        invocation["name"] = field(await read_json(request), "name", str)
        return web.json_response(dump(sdk_model("GetTestSuiteInvocationResponseModel").model_validate(invocation)))

    async def resubmit(self, request: web.Request) -> web.Response:
        """Runs of an invocation played again, in the same invocation, against `agent_id` (with
        its `agent_config_override`, if given)."""
        invocation = self.platform.invocations.get(request.match_info["invocation_id"])
        if invocation is None:
            return error_response(404, "invocation_not_found", "Test invocation not found")
        body = await read_json(request)
        run_ids = field(body, "test_run_ids", list, required=True)
        if not run_ids or not all(isinstance(r, str) for r in run_ids):
            raise Unprocessable("body", "test_run_ids", "must be a non-empty list of test run ids")
        agent_id = field(body, "agent_id", str, required=True)
        field(body, "branch_id", str)
        if agent_id not in self.platform.agents:
            return error_response(404, "agent_not_found", "Agent not found")
        runs = {r["test_run_id"]: r for r in invocation["test_runs"]}
        unknown = [r for r in run_ids if r not in runs]
        if unknown:
            return error_response(404, "test_run_not_found",
                                  f"Test run not found in this invocation: {', '.join(unknown)}")
        override = self.platform.agent_with_override(agent_id, body.get("agent_config_override"))
        invocation["cancelled"] = False
        for run_id in dict.fromkeys(run_ids):
            self.platform.start_run(runs[run_id], agent_id, override)
        return web.json_response({})
