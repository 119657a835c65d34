"""Start many ``agentauth serve`` processes cheaply: this process imports the service once (about 1.5 s of CPU
on this machine), then forks a child per order read on stdin - a JSON line ``{"env", "port", "log",
"workers"}`` - and answers the child's pid. Each child replaces its environment and runs the real ``serve``
command of the CLI (``agentauth.cli.app``, with ``--workers`` when asked): a separate process with its own
event loop, connections and start-up, as ``agentauth serve`` run from a shell, minus the import. With workers,
uvicorn's supervisor forks them instead of spawning (a spawned worker imports everything again): each worker
still runs its own start-up concurrently with the others. Children are reaped automatically (SIGCHLD
ignored), so a pid that no longer exists has exited. Used by test_concurrent_start.py."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys

import uvicorn._subprocess

import agentauth.api.app  # noqa: F401
from agentauth import cli


def run_child(order: dict[str, object]) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    env = order["env"]
    assert isinstance(env, dict)
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in env.items()})
    log = os.open(str(order["log"]), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    args = ["serve", "--host", "127.0.0.1", "--port", str(order["port"]), "--log-level", "warning"]
    workers = int(str(order.get("workers", 1)))
    if workers > 1:
        uvicorn._subprocess.spawn = multiprocessing.get_context("fork")  # type: ignore[assignment]
        args += ["--workers", str(workers)]
    cli.app(args, standalone_mode=False)


def main() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while line := sys.stdin.readline():
        order = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                run_child(order)
            except BaseException as exc:
                code = 1
                print(f"zygote child failed: {exc!r}", file=sys.stderr, flush=True)
            finally:
                os._exit(code)
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
