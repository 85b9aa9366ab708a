"""Assertions that read as sentences about a call's checks:

    assert_check(result, "agent_says: refund", passed=False, detail="not said in any of 3 agent turns")
    assert_check(result, "agent_calls: lookup_dispute", passed=True, detail_starts="lookup_dispute called once")

`result` is a CallResult or a list of Checks; the name is the check's whole name, or its key
(`agent_calls`) when only one check of that key exists. A failure prints every check.
"""

from __future__ import annotations

from typing import Any


def _checks(result: Any) -> list[Any]:
    return list(result.checks if hasattr(result, "checks") else result)


def check_named(result: Any, name: str) -> Any:
    """The one check with this name (or, for a key like `agent_calls`, the one check of that key)."""
    checks = _checks(result)
    exact = [c for c in checks if c.name == name]
    found = exact or [c for c in checks if c.name.split(":")[0] == name]
    assert len(found) == 1, f"expected one check {name!r}, got {[(c.name, c.passed, c.detail) for c in checks]}"
    return found[0]


def assert_check(result: Any, name: str, *, passed: bool, detail: str | None = None,
                 detail_starts: str | None = None, detail_has: str | None = None) -> None:
    """The call's check `name` passed (or failed), and its detail says what a user would read."""
    check = check_named(result, name)
    everything = [(c.name, c.passed, c.detail) for c in _checks(result)]
    assert check.passed is passed, f"{name} {'failed' if passed else 'passed'}: {check.detail!r}; all: {everything}"
    if detail is not None:
        assert check.detail == detail, f"{name}: {check.detail!r}"
    if detail_starts is not None:
        assert check.detail.startswith(detail_starts), f"{name}: {check.detail!r}"
    if detail_has is not None:
        assert detail_has in check.detail, f"{name}: {check.detail!r}"


def failing(result: Any) -> list[str]:
    """The names of the checks that failed."""
    return [c.name for c in _checks(result) if not c.passed]
