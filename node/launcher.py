"""Start ``meridian node`` processes forked from an interpreter that has already imported them.

A node process spends about 0.55 s of CPU importing aiohttp, pycrdt, cryptography and its own
modules before it reads its config, and a typical test's node does little else: the suite's 150
node starts were a quarter of its CPU (docs/performance.md). The launcher is a small process that
imports the node's modules once and then forks one child per node. Each child is a real node
process: its own pid and session, its environment, its log file as stdout and stderr, and
`meridian.cli.main(["node", "--config", FILE])` run from the top, as ``python -m meridian node``
would run it; only the interpreter start and the imports are shared.

`Launcher` is the owning side: it starts the launcher process (`python -m
meridian.node.launcher`), asks it for nodes, and hands back a `LaunchedProcess`, which answers
poll, wait, send_signal, terminate and kill as `subprocess.Popen` does. The launcher process is
the parent of every node it forks; it reaps them and reports each exit status over its pipe (a
thread of the owner reads those reports). It exits when the owner closes the pipe (the owner
exited); the nodes it started run on, as nodes started with Popen outlive their starter.

A forked node keeps the launcher's command line: ``ps`` lists it as ``python -m
meridian.node.launcher``; its log and its config are where the owner said.

`node/localcluster.py` uses it when ``MERIDIAN_FORK_NODES=1`` (the tests set it) and the node
runs from the installed code; the demo and a node from an older release's tree are exec'd.

Protocol (JSON, one object per line): the owner writes ``{"argv", "env", "log"}``; the launcher
answers ``{"started": pid}`` or ``{"error": text}``, and later ``{"exited": pid, "code": rc}``
(`rc` as Popen's returncode: negative for a signal).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

FORK_ENV = "MERIDIAN_FORK_NODES"
STOP_GRACE_S = 5.0  # how long `close` waits for the launcher to exit once its pipe is closed


class LaunchedProcess:
    """A node forked by the launcher, with the part of `subprocess.Popen`'s interface that
    localcluster and the tests use."""

    def __init__(self, pid: int, launcher: Launcher) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._launcher = launcher

    def poll(self) -> int | None:
        self.returncode = self._launcher.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        code = self._launcher.wait_exit(self.pid, timeout)
        if code is None:
            raise subprocess.TimeoutExpired(f"node pid {self.pid}", timeout or 0.0)
        self.returncode = code
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # as Popen: never signal a pid that may have been reused
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Launcher:
    """The owner's handle on one launcher process (started on first use)."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # one request at a time: its answer is the next "started"
        self._changed = threading.Condition()
        self._started: list[dict[str, Any]] = []
        self._exits: dict[int, int] = {}
        self._gone = False

    def start(self, argv: list[str], env: dict[str, str], log: Path) -> LaunchedProcess:
        with self._lock:
            process = self._ensure_running()
            assert process.stdin is not None
            request = {"argv": argv, "env": env, "log": str(log)}
            process.stdin.write(json.dumps(request).encode() + b"\n")
            process.stdin.flush()
            with self._changed:
                self._changed.wait_for(lambda: bool(self._started) or self._gone)
                if not self._started:
                    raise RuntimeError("the node launcher exited")
                answer = self._started.pop(0)
        if "error" in answer:
            raise RuntimeError(f"the node launcher could not start a node: {answer['error']}")
        return LaunchedProcess(int(answer["started"]), self)

    def exit_code(self, pid: int) -> int | None:
        with self._changed:
            return self._exits.get(pid)

    def wait_exit(self, pid: int, timeout: float | None) -> int | None:
        with self._changed:
            self._changed.wait_for(lambda: pid in self._exits or self._gone, timeout)
            if pid not in self._exits and self._gone:
                raise RuntimeError(f"the node launcher exited: the exit of pid {pid} is unknown")
            return self._exits.get(pid)

    def _ensure_running(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "meridian.node.launcher"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                start_new_session=True,  # a Ctrl-C for the owner is not one for the launcher
            )
            threading.Thread(target=self._read_reports, daemon=True).start()
        return self._process

    def _read_reports(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            report = json.loads(line)
            with self._changed:
                if "exited" in report:
                    self._exits[int(report["exited"])] = int(report["code"])
                else:
                    self._started.append(report)
                self._changed.notify_all()
        with self._changed:
            self._gone = True
            self._changed.notify_all()


_shared: Launcher | None = None


def shared_launcher() -> Launcher:
    """This process's launcher (one per process; its nodes are forked from it)."""
    global _shared
    if _shared is None:
        _shared = Launcher()
    return _shared


# --- the launcher process ------------------------------------------------------------------


def _serve() -> None:
    """Import the node once, then fork a node per request until the owner closes the pipe."""
    import meridian.cli
    import meridian.node.config
    import meridian.node.gc_tuning
    import meridian.node.server
    import meridian.sync.store
    import meridian.tomlschema  # noqa: F401  (what `meridian node` imports as it starts)

    requests, reports = os.dup(0), os.dup(1)
    _redirect(os.devnull, 0)
    os.dup2(2, 1)  # a stray print goes to stderr, never into the reports
    wakeup_read, wakeup_write = os.pipe()
    os.set_blocking(wakeup_write, False)
    signal.set_wakeup_fd(wakeup_write)
    signal.signal(signal.SIGCHLD, lambda _signo, _frame: None)  # wakes the select below
    pending = b""
    while True:
        readable, _, _ = select.select([requests, wakeup_read], [], [])
        if wakeup_read in readable:
            os.read(wakeup_read, 512)
            _report_exits(reports)
        if requests in readable:
            chunk = os.read(requests, 65536)
            if not chunk:
                return  # the owner went away
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                _write(reports, _fork_node(json.loads(line), (requests, reports, wakeup_read)))


def _fork_node(request: dict[str, Any], launcher_fds: tuple[int, ...]) -> dict[str, Any]:
    try:
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as error:
        return {"error": str(error)}
    pid = os.fork()
    if pid == 0:
        _run_node(request, log, launcher_fds)  # never returns
    os.close(log)
    return {"started": pid}


def _run_node(request: dict[str, Any], log: int, launcher_fds: tuple[int, ...]) -> None:
    """In the child: become the process ``python -m meridian node`` would have started."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for fd in launcher_fds:
            os.close(fd)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [sys.argv[0], *request["argv"]]
        from meridian.cli import main

        code = main(request["argv"])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)


def _report_exits(reports: int) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _write(reports, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def _write(fd: int, report: dict[str, Any]) -> None:
    data = json.dumps(report).encode() + b"\n"
    while data:
        data = data[os.write(fd, data) :]


def _redirect(path: str, fd: int) -> None:
    opened = os.open(path, os.O_RDWR)
    os.dup2(opened, fd)
    os.close(opened)


def main() -> int:
    _serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
