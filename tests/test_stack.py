"""The embedded stack's Temporal dev server, started as `make dev` starts it: its SQLite file is in write-ahead-log
mode."""

from __future__ import annotations

import signal
import sqlite3
import subprocess

from cli.stack import stack_services, wait_for_port
from core.settings import Settings
from testkit.servers import free_port


def test_the_dev_server_keeps_its_state_in_a_wal_mode_sqlite_file(tmp_path):
    settings = Settings(data_dir=tmp_path, temporal_address="", temporal_port=free_port(), temporal_ui_port=free_port())
    [temporal] = [spec for spec in stack_services(settings) if spec.name == "temporal"]
    server = subprocess.Popen(
        temporal.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_for_port(settings.temporal_port, 60, server)
        with sqlite3.connect(tmp_path / "temporal.db") as db:  # the journal mode is kept in the file itself
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(30)
    assert (tmp_path / "temporal.db").stat().st_size > 0
