"""A collector (`steplog serve`) in a child process, for tests, benchmarks and scripts that
need one on this machine: it starts the command, learns the port from its first line, keeps
its log in a file (a pipe nobody reads could fill up and stall it), and stops it with
SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


class CollectorProcess:
    """`python -m steplog serve` on 127.0.0.1 (a free port unless `port` is given), writing
    into `root/collected`, with the token in `root/token`."""

    def __init__(
        self, root: str | os.PathLike[str], token: str, port: int = 0, extra: tuple[str, ...] = ()
    ) -> None:
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        self.dir = root / "collected"
        self.err_path = root / "collector.err"
        self.token_file = root / "token"
        self.token_file.write_text(token + "\n")
        self.extra = extra
        self.port = port
        self.proc: subprocess.Popen[str] | None = None
        self.start()

    def start(self) -> None:
        """Starts (or restarts, on the same port and directory) the collector."""
        cmd = [sys.executable, "-m", "steplog", "serve", "--listen", f"127.0.0.1:{self.port}"]
        cmd += ["--dir", str(self.dir), "--token-file", str(self.token_file), *self.extra]
        with open(self.err_path, "a", encoding="utf-8") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            self.proc.communicate(timeout=10)
            raise RuntimeError(f"steplog serve did not start: {line}{self.stderr()}")
        # "steplog serve: listening on 127.0.0.1:PORT" (then " (TLS)" when serving TLS)
        self.port = int(line.split("listening on", 1)[1].split()[0].rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stderr(self) -> str:
        """Everything the collector logged so far (all its starts)."""
        return self.err_path.read_text(encoding="utf-8")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def run_dir(self, run_id: str) -> Path:
        return self.dir / run_id

    def kill(self) -> None:
        """SIGKILL: the collector gets no chance to flush anything."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.communicate(timeout=10)

    def stop(self) -> tuple[int, str]:
        """SIGTERM; returns the exit code and what the collector printed on stderr."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=30)
        return self.proc.returncode, self.stderr()

    def __enter__(self) -> CollectorProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
