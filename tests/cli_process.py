"""`voicelab` command lines in real processes, without paying Python's imports for each one.

A fresh `python -m voicelab` spends most of a second importing (the SDK, pydantic models)
before it reads its first argument: a corpus of a hundred bad inputs spent almost two minutes on
that. Here a small fork server (one single-threaded Python process that has imported
`voicelab.surfaces.cli.main`, and the modules `run` and `serve` import when they start) forks
one child per command line. Each child is still its own process, with its own working
directory, environment, standard streams and signal handlers, and runs
`voicelab.surfaces.cli.main.entry()` exactly as the installed `voicelab` command does; its exit
status is the command's. Only the imports are shared.
"""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

SERVER = r"""
import json, os, sys
import voicelab.surfaces.cli.main  # the imports every command line shares
# and those that `run` and `serve` load lazily (the SDK, the harness, the local backend: ~0.35 s
# of each child's 0.5 s), shared too; a child imports nothing a real `voicelab` would not
import voicelab.lab.batch, voicelab.local.server  # noqa: E401

def child(job):
    os.chdir(job["cwd"])
    os.environ.clear()
    os.environ.update(job["env"])
    for fd, path, mode in ((0, os.devnull, os.O_RDONLY), (1, job["out"], os.O_WRONLY), (2, job["err"], os.O_WRONLY)):
        target = os.open(path, mode)
        os.dup2(target, fd)
        os.close(target)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False, buffering=1)
    sys.stderr = open(2, "w", closefd=False, buffering=1)
    sys.argv = ["voicelab", *job["args"]]
    code = 0
    try:
        voicelab.surfaces.cli.main.entry()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 99
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

requests, replies = sys.stdin, sys.stdout
for line in requests:
    pid = os.fork()
    if pid == 0:
        child(json.loads(line))
    replies.write(json.dumps({"pid": pid}) + "\n")
    replies.flush()
    _, status = os.waitpid(pid, 0)
    replies.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")
    replies.flush()
"""


class _Server:
    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, bufsize=1)

    def reply(self, timeout: float | None) -> dict | None:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the voicelab fork server died")
        return json.loads(line)

    def run(self, job: dict, timeout: float) -> int:
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        pid = self.reply(None)["pid"]
        done = self.reply(timeout)
        if done is None:  # it accepted its input and went on running
            os.kill(pid, signal.SIGKILL)
            self.reply(None)
            return -1
        return done["code"]


_IDLE: queue.SimpleQueue[_Server] = queue.SimpleQueue()


def run(args: list[str], *, cwd: str | Path = ".", env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess:
    """`voicelab ARGS` in its own process; a CompletedProcess like `subprocess.run(..., text=True)`
    (exit status -1 and a note in stderr when it was still running after `timeout` s). Safe from
    several threads at once: each gets a fork server of its own."""
    try:
        server = _IDLE.get_nowait()
    except queue.Empty:
        server = _Server()
    with tempfile.TemporaryDirectory(prefix="voicelab-cli-") as folder:
        out, err = Path(folder) / "stdout", Path(folder) / "stderr"
        out.touch()
        err.touch()
        job = {"args": list(args), "cwd": str(Path(cwd).resolve()), "env": dict(os.environ if env is None else env),
               "out": str(out), "err": str(err)}
        try:
            code = server.run(job, timeout)
        finally:
            _IDLE.put(server)
        stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
    if code == -1:
        stderr += f"\nstill running after {timeout:g} s"
    return subprocess.CompletedProcess(["voicelab", *args], code, stdout, stderr)
