"""A fork server for tests that run many short command lines: it imports torch, transformers and
promptlearning once, then forks a fresh process per command, so each command pays for its own work and
not for three seconds of imports. Each child gets its own argv, environment, working directory, stdin
(/dev/null), stdout and stderr, and exits with the command's exit code, as a new process would.

    with ForkServer(env) as server:
        returncode, stdout, stderr = server.run(code, argv, env=..., cwd=..., timeout=120)

``code`` is Python source run as ``__main__`` in the child (with ``sys.argv = ["promptlearning", *argv]``).
Only modules that read the environment when imported would see the server's environment instead of
the command's; the server is started with the environment the commands share.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

SERVER = r"""
import json, os, signal, sys, tempfile, time, traceback
import torch, transformers  # the slow imports, paid once
import transformers.models.auto.modeling_auto
import promptlearning.cli, promptlearning.models, promptlearning.tasks
# what the commands import lazily, paid once too (each was ~0.3 s in every child)
import promptlearning.search, promptlearning.serving, promptlearning.training, promptlearning.runs.report
import promptlearning.evaluation.metrics, promptlearning.evaluation.text_metrics, promptlearning.pretraining
import sklearn.metrics, peft, accelerate

def child(job, out, err):
    os.chdir(job["cwd"])
    os.environ.clear()
    os.environ.update(job["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    sys.argv = ["promptlearning", *job["argv"]]
    code = 0
    try:
        exec(compile(job["code"], "<command>", "exec"), {"__name__": "__main__"})
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)

for line in sys.stdin:
    job = json.loads(line)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:
            child(job, out.fileno(), err.fileno())
        deadline = time.monotonic() + job["timeout"]
        status = None
        while status is None:
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(raw)
            elif time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = "timeout"
            else:
                time.sleep(0.02)
        out.seek(0)
        err.seek(0)
        reply = {"returncode": status, "stdout": out.read().decode("utf-8", "replace"),
                 "stderr": err.read().decode("utf-8", "replace")}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()
"""


class ForkServer:
    """One server process; ``run`` is not thread-safe (give each worker thread its own server)."""

    def __init__(self, env: dict[str, str], cwd: str | Path | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=cwd, text=True
        )

    def run(self, code: str, argv: list[str], *, env: dict[str, str], cwd: str | Path, timeout: float) -> Any:
        """``(returncode, stdout, stderr)`` of the command; ``returncode`` -9 and a TIMEOUT line on a hang."""
        job = {"code": code, "argv": argv, "env": env, "cwd": str(cwd), "timeout": timeout}
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server died (exit code {self.process.poll()})")
        reply = json.loads(line)
        if reply["returncode"] == "timeout":
            return -9, reply["stdout"], f"TIMEOUT after {timeout} s\n{reply['stderr']}"
        return reply["returncode"], reply["stdout"], reply["stderr"]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
