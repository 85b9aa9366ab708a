"""The pinned versions of ElevenLabs' own clients, kept in one place: contracts/judges.toml.

    python scripts/judges.py check                 # exit 1 naming each file that differs
    python scripts/judges.py write                 # judges.toml → pyproject.toml, js/package.json (+ lock)
    python scripts/judges.py refresh [--latest] [NAME=VERSION ...]

`refresh` (what scripts/refresh-judges.sh runs) sets the versions (`--latest`: each package's
newest release, from PyPI through pip and from npm through npm; `NAME=VERSION`: that one), writes
them into the two files that install them, reinstalls (scripts/setup.sh) and refreshes the
contracts from the pinned CLI (scripts/contracts.py refresh), then names the docs that still
mention an old version. pyproject.toml pins the SDK exactly: voicelab/harness/sdk.py reads its
private parts, so a new SDK is taken on purpose, by this command, with the suite as the judge.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JUDGES = ROOT / "contracts" / "judges.toml"
PYPROJECT = ROOT / "pyproject.toml"
PACKAGE = ROOT / "js" / "package.json"
LOCK = ROOT / "js" / "package-lock.json"
CLI_PACKAGE = "@elevenlabs/cli-linux-x64"
#: Where a pinned version is named in prose (checked by `refresh`, reported, never rewritten).
DOCS = [ROOT / "README.md", ROOT / "docs" / "conformance.md", ROOT / "contracts" / "README.md"]


def load() -> dict[str, dict[str, str]]:
    pins = tomllib.loads(JUDGES.read_text())
    return {"python": dict(pins.get("python", {})), "npm": dict(pins.get("npm", {}))}


def python_requirement(text: str, name: str) -> str | None:
    """The version `name` is pinned to (`name==X`) in pyproject.toml's dependencies, or its spec."""
    m = re.search(rf'^\s*"{re.escape(name)}([^"]*)"', text, re.M)
    return m.group(1) if m else None


def npm_pins(package: dict) -> dict[str, str]:
    return {**package.get("dependencies", {}), **package.get("optionalDependencies", {})}


def differences(pins: dict[str, dict[str, str]]) -> list[str]:
    """What pyproject.toml, js/package.json and its lock say that judges.toml does not."""
    out = []
    text = PYPROJECT.read_text()
    for name, version in pins["python"].items():
        spec = python_requirement(text, name)
        if spec != f"=={version}":
            out.append(f"pyproject.toml: {name}{spec or ' missing'}, contracts/judges.toml pins {version}")
    package = json.loads(PACKAGE.read_text())
    listed = npm_pins(package)
    locked = json.loads(LOCK.read_text()).get("packages", {}) if LOCK.exists() else {}
    for name, version in pins["npm"].items():
        if listed.get(name) != version:
            out.append(f"js/package.json: {name} {listed.get(name, 'missing')}, contracts/judges.toml pins {version}")
        got = locked.get(f"node_modules/{name}", {}).get("version")
        if got != version:
            out.append(f"js/package-lock.json: {name} {got or 'missing'}, contracts/judges.toml pins {version}")
    for name in sorted(set(listed) - set(pins["npm"])):
        out.append(f"js/package.json: {name} is not in contracts/judges.toml")
    return out


def write(pins: dict[str, dict[str, str]]) -> None:
    text = PYPROJECT.read_text()
    for name, version in pins["python"].items():
        text, n = re.subn(rf'^(\s*)"{re.escape(name)}[^"]*"', rf'\g<1>"{name}=={version}"', text, count=1, flags=re.M)
        if n != 1:
            sys.exit(f"pyproject.toml: no dependency {name!r} to pin (add it to [project] dependencies)")
    PYPROJECT.write_text(text)
    package = json.loads(PACKAGE.read_text())
    for section in ("dependencies", "optionalDependencies"):
        for name in package.get(section, {}):
            if name in pins["npm"]:
                package[section][name] = pins["npm"][name]
    missing = set(pins["npm"]) - set(npm_pins(package))
    for name in sorted(missing):
        package.setdefault("dependencies", {})[name] = pins["npm"][name]
    PACKAGE.write_text(json.dumps(package, indent=2) + "\n")
    subprocess.run(["npm", "install", "--package-lock-only", "--no-audit", "--no-fund", "--loglevel=error"],
                   cwd=PACKAGE.parent, check=True)


def latest_python(name: str) -> str:
    out = subprocess.run([sys.executable, "-m", "pip", "index", "versions", name], check=True,
                         capture_output=True, text=True).stdout
    m = re.search(rf"^{re.escape(name)} \(([^)]+)\)", out, re.M)
    if not m:
        sys.exit(f"pip index versions {name}: no version in its answer")
    return m.group(1)


def latest_npm(name: str) -> str:
    return subprocess.run(["npm", "view", name, "version"], check=True, capture_output=True, text=True).stdout.strip()


def set_versions(pins: dict[str, dict[str, str]], latest: bool, assignments: list[str]) -> None:
    if latest:
        pins["python"] = {name: latest_python(name) for name in pins["python"]}
        pins["npm"] = {name: latest_npm(name) for name in pins["npm"]}
    for item in assignments:
        name, sep, version = item.rpartition("=")
        if not sep or not name or not version:
            sys.exit(f"{item!r}: write NAME=VERSION, e.g. @elevenlabs/client=1.26.0")
        section = "python" if name in pins["python"] else "npm" if name in pins["npm"] else None
        if section is None:
            sys.exit(f"{name!r} is not pinned in contracts/judges.toml: {', '.join([*pins['python'], *pins['npm']])}")
        pins[section][name] = version
    text = JUDGES.read_text()
    for section in pins.values():
        for name, version in section.items():
            key = f'"{name}"' if not re.fullmatch(r"[A-Za-z0-9_-]+", name) else name
            text = re.sub(rf'^({re.escape(key)}\s*=\s*)"[^"]*"', rf'\g<1>"{version}"', text, count=1, flags=re.M)
    JUDGES.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="exit 1 naming each file that differs from contracts/judges.toml")
    sub.add_parser("write", help="write contracts/judges.toml into pyproject.toml and js/package.json")
    refresh = sub.add_parser("refresh", help="set versions, write, reinstall, refresh the contracts")
    refresh.add_argument("--latest", action="store_true", help="each package's newest release")
    refresh.add_argument("assignments", nargs="*", metavar="NAME=VERSION")
    args = parser.parse_args()
    pins = load()
    if args.command == "check":
        problems = differences(pins)
        print("\n".join(problems) or "the pinned clients agree with contracts/judges.toml")
        return 1 if problems else 0
    if args.command == "refresh":
        before = {name: v for section in pins.values() for name, v in section.items()}
        set_versions(pins, args.latest, args.assignments)
        write(pins)
        for step in (["bash", str(ROOT / "scripts" / "setup.sh")],
                     [str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "scripts" / "contracts.py"), "refresh",
                      "--cli-version", pins["npm"][CLI_PACKAGE]]):
            if subprocess.run(step).returncode != 0:
                print(f"refresh-judges: {' '.join(step[-3:] if 'contracts.py' in step[1] else step)} failed (above); "
                      "the new pins are written: fix it and run scripts/refresh-judges.sh again", file=sys.stderr)
                return 3
        changed = {name: (old, v) for section in pins.values() for name, v in section.items()
                   if (old := before.get(name)) != v}
        for name, (old, new) in changed.items():
            print(f"{name}: {old} → {new}")
            for doc in DOCS:
                if old and old in doc.read_text():
                    print(f"  {doc.relative_to(ROOT)} still names {old}: say what changed there")
        print("now run the suite (bash scripts/test.sh): the judges decide whether the backend still conforms")
        return 0
    write(pins)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
