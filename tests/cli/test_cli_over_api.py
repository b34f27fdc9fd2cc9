"""`wlops` resource commands against the real API served by uvicorn on a free port (and, for tasks, a real Temporal
server with real workers on a tiny model): login and its credentials file, refresh and API keys, datasets, a task
created, started and watched to COMPLETED through a connection that drops, its report, the registry and a knowledge
base, scenario suites created, run against a model version, compared and exported; errors print the API's message and
exit 1, and `--json` prints JSON only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import stat
import threading
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from activities.context import ActivityContext
from api.main import create_app
from auth.tokens import ACCESS, issue_token
from cli.main import main
from cli.users import create_user
from core.access import Role
from db.models import RegisteredModel, User, new_id
from testkit.api import TEST_PASSWORD, with_temporal
from testkit.documents import write_dataset, write_knowledge
from testkit.model import TINY_HYPERPARAMETERS, random_adapters
from testkit.phases import running_workers
from testkit.polling import poll_until
from testkit.registry import add_version
from testkit.servers import free_port, serving
from testkit.stale_documents import CHANGED, GUIDE, ROWS
from testkit.suites import CASES


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    folder = tmp_path / "wlops-config"
    monkeypatch.setenv("WLOPS_CONFIG_DIR", str(folder))
    for name in ("WLOPS_API_URL", "WLOPS_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return folder


@pytest.fixture
def served(settings, temporal_env, config_dir):
    """(settings, base URL) of the real API on a free port, with a user `cli` (owner of `cli-org`)."""
    settings = with_temporal(settings, temporal_env, event_poll_seconds=0.1)
    create_user(settings, "cli", TEST_PASSWORD, "cli-org", Role.OWNER)
    with serving(create_app(settings)) as url:
        yield settings, url.removesuffix("/v1")


class Wlops:
    """`wlops …` in this process: the exit status and what it printed."""

    def __init__(self, capsys):
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        try:
            main(list(argv))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *argv: str) -> list:
        """The documents a `--json` command printed, one a line; it must succeed and print nothing else."""
        code, out, err = self(*argv, "--json")
        assert code == 0, err
        return [json.loads(line) for line in out.splitlines()]

    # in threads, for tests whose workers need the event loop free
    def in_thread(self, *argv: str):
        return asyncio.to_thread(self, *argv)

    def json_in_thread(self, *argv: str):
        return asyncio.to_thread(self.json, *argv)


@pytest.fixture
def wlops(capsys):
    return Wlops(capsys)


def login(wlops: Wlops, url: str) -> None:
    assert wlops("login", "--api", url, "--username", "cli", "--password", TEST_PASSWORD)[0] == 0


def test_login_keeps_tokens_private_refreshes_them_and_logs_out(served, wlops, config_dir):
    settings, url = served
    code, out, err = wlops("login", "--api", url, "--username", "cli", "--password", "not the password")
    assert code == 1 and "wrong username or password" in err and out == ""
    assert not (config_dir / "credentials.json").exists()

    [tokens] = wlops.json("login", "--api", url, "--username", "cli", "--password", TEST_PASSWORD)
    path = config_dir / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored["current"] == url and stored["apis"][url]["access_token"] == tokens["access_token"]

    # the current API is remembered; an expired access token is refreshed once, and the new pair is kept
    claims = httpx.get(f"{url}/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
    expired, _ = issue_token(settings.secret_key, claims["user_id"], claims["org_id"], ACCESS, 0, timedelta(minutes=-1))
    stored["apis"][url]["access_token"] = expired
    path.write_text(json.dumps(stored))
    assert wlops.json("datasets", "list") == [{"items": [], "total": 0, "limit": 50, "offset": 0}]
    refreshed = json.loads(path.read_text())["apis"][url]
    assert refreshed["access_token"] not in (expired, tokens["access_token"]) and refreshed["username"] == "cli"

    # an API key in WLOPS_API_KEY instead of a stored login
    key = httpx.post(
        f"{url}/api/v1/api-keys",
        headers={"Authorization": f"Bearer {refreshed['access_token']}"},
        json={"name": "cli test", "scopes": ["datasets:read"]},
    ).json()["secret"]
    assert wlops.json("logout") == [{"api_url": url, "logged_out": True}]
    assert url not in json.loads(path.read_text())["apis"]
    code, _, err = wlops("datasets", "list", "--api", url)
    assert code == 1 and "wlops login" in err
    with pytest.MonkeyPatch.context() as env:
        env.setenv("WLOPS_API_KEY", key)
        assert wlops.json("datasets", "list", "--api", url)[0]["total"] == 0
        code, _, err = wlops("tasks", "list", "--api", url)  # beyond the key's scopes
        assert code == 1 and "tasks:read" in err


def test_datasets_and_the_errors_of_the_api(served, wlops, tmp_path):
    _, url = served
    login(wlops, url)
    [dataset] = wlops.json(
        "datasets", "upload", str(write_dataset(tmp_path / "faq.jsonl")), "--name", "FAQ", "--domain", "support"
    )
    assert (dataset["name"], dataset["domain"], dataset["sample_count"]) == ("FAQ", "support", 48)
    [listed] = wlops.json("datasets", "list")
    assert [d["dataset_id"] for d in listed["items"]] == [dataset["dataset_id"]]
    [shown] = wlops.json("datasets", "show", dataset["dataset_id"], "--preview", "3")
    assert (
        shown["dataset_id"] == dataset["dataset_id"]
        and len(shown["preview"]) == 3
        and "question" in shown["preview"][0]
    )
    code, out, _ = wlops("datasets", "show", dataset["dataset_id"], "--preview", "2")
    assert code == 0 and "FAQ" in out and "preview" in out

    # errors: the API's message on stderr, exit 1 (2 for a usage error); nothing on stdout
    code, out, err = wlops("datasets", "show", "no-such-dataset", "--json")
    assert (code, out) == (1, "") and "dataset no-such-dataset not found" in err
    (tmp_path / "broken.jsonl").write_text("this is not JSON\n")
    code, _, err = wlops("datasets", "upload", str(tmp_path / "broken.jsonl"))
    assert code == 1 and err.startswith("wlops: ") and len(err.strip()) > len("wlops: ")
    code, _, err = wlops(
        "tasks", "create", "--standard", "--name", "bad", "--dataset", dataset["dataset_id"], "--hp", "learning_rate=5"
    )
    assert code == 1 and "hyperparameters.learning_rate: Input should be less than or equal to 1" in err
    code, _, err = wlops("tasks", "create", "--name", "no mode", "--dataset", dataset["dataset_id"])
    assert code == 2 and "one of the arguments --standard --continuous is required" in err
    unreachable = f"http://127.0.0.1:{free_port()}"
    code, _, err = wlops("tasks", "list", "--api", unreachable)
    assert code == 1 and f"could not reach the API at {unreachable}" in err

    [kb] = wlops.json("knowledge", "create", "Docs", "--description", "product docs")
    assert wlops.json("knowledge", "list")[0]["items"][0]["knowledge_base_id"] == kb["knowledge_base_id"]
    [shown] = wlops.json("knowledge", "show", kb["knowledge_base_id"])
    assert (shown["status"], shown["documents"]) == ("CREATED", [])
    [stale] = wlops.json("knowledge", "stale-rows", kb["knowledge_base_id"], "--state", "stale")
    assert stale == {"knowledge_base_id": kb["knowledge_base_id"], "items": [], "total": 0}
    code, out, _ = wlops("knowledge", "stale-rows", kb["knowledge_base_id"])
    assert code == 0 and "stale rows: 0" in out
    code, _, err = wlops("knowledge", "stale-rows", "nope")
    assert code == 1 and "knowledge base nope not found" in err


def test_dataset_versions_from_the_command_line(served, wlops, tmp_path):
    _, url = served
    login(wlops, url)
    path = write_dataset(tmp_path / "faq.jsonl")
    [dataset] = wlops.json("datasets", "upload", str(path), "--name", "FAQ")
    dataset_id = dataset["dataset_id"]
    [rows] = wlops.json("datasets", "rows", dataset_id, "--limit", "2")
    first = rows["items"][0]
    assert rows["version"] == 1 and rows["total"] == 48 and first["checks"]

    # correct a row's checks and tag it, then exclude another: two versions, each with its reason
    [annotated] = wlops.json(
        "datasets", "annotate", dataset_id, "--row", first["row_id"], "--reason", "reviewed",
        "--checks", '[{"type": "contains_any", "values": ["x"]}]', "--tag", "reviewed",
    )  # fmt: skip
    assert (annotated["version"], annotated["kind"], annotated["reason"]) == (2, "annotation", "reviewed")
    code, out, _ = wlops(
        "datasets", "annotate", dataset_id, "--row", rows["items"][1]["row_id"], "--reason", "off topic", "--exclude"
    )
    assert code == 0 and "annotation" in out
    [versions] = wlops.json("datasets", "versions", dataset_id)
    assert [v["version"] for v in versions["items"]] == [1, 2, 3] and versions["head"] == 3
    [diff] = wlops.json("datasets", "diff", dataset_id, "--from", "1")
    assert diff["counts"] == {"added": 0, "removed": 0, "changed": 2, "unchanged": 46}
    code, out, _ = wlops("datasets", "diff", dataset_id)
    assert code == 0 and "version 2 → 3" in out and "excluded" in out
    [tagged] = wlops.json("datasets", "rows", dataset_id, "--tag", "reviewed")
    assert [r["row_id"] for r in tagged["items"]] == [first["row_id"]] and not tagged["items"][0]["checks"].startswith(
        "(derived)"
    )

    # downloads, and a new upload as the next version
    [chat] = wlops.json("datasets", "download", dataset_id, "--format", "chat", "-o", str(tmp_path / "chat.jsonl"))
    assert chat["rows"] == 47 and '"messages"' in (tmp_path / "chat.jsonl").read_text()
    [uploaded] = wlops.json("datasets", "new-version", dataset_id, str(path), "--reason", "as uploaded")
    assert uploaded["version"] == 4 and uploaded["changes"]["changed"] == 2

    # errors: the API's message, exit 1; a usage error, exit 2
    code, _, err = wlops("datasets", "annotate", dataset_id, "--row", "nope", "--reason", "x", "--exclude")
    assert code == 1 and "'nope' is not in this version" in err
    code, _, err = wlops("datasets", "annotate", dataset_id, "--row", "r", "--reason", "x", "--checks", "{")
    assert code == 2 and "not JSON" in err
    code, _, err = wlops("datasets", "new-version", dataset_id, str(path), "--base-version", "1")
    assert code == 1 and "not 1" in err

    # the lineage of a version, then the row erased from every version that held it
    [graph] = wlops.json("lineage", "dataset_version", f"{dataset_id}@2")
    assert {n["label"] for n in graph["nodes"]} == {"FAQ v1", "FAQ v2", "FAQ v3", "FAQ v4"}
    code, out, _ = wlops("lineage", "dataset_version", f"{dataset_id}@1")
    assert code == 0 and "FAQ v1 (dataset version) → FAQ v2 (dataset version)" in out
    [erasure] = wlops.json("erase", dataset_id, rows["items"][1]["row_id"], "--reason", "asked to")
    assert [v["rows_after"] for v in erasure["dataset_versions"]] == [47, 47, 47, 47]
    [listed] = wlops.json("erasures")
    assert [e["erasure_id"] for e in listed["items"]] == [erasure["erasure_id"]]
    code, _, err = wlops("erase", dataset_id, rows["items"][1]["row_id"], "--reason", "again")
    assert code == 1 and "holds row" in err
    code, _, err = wlops("erase-document", "no-such-kb", "no-such-doc", "--reason", "x")
    assert code == 1 and "not found" in err
    # everything the signed-in user sent: here, every row of every version of the dataset they uploaded
    with ActivityContext.from_settings(served[0]).sessions() as session:
        user_id = session.scalar(select(User.id).where(User.username == "cli"))
    # how long the organization keeps its history: shown, set, and a bad value refused before any call
    [shown] = wlops.json("retention")
    assert (shown["qa_retention_days"], shown["event_retention_days"], shown["runs"]) == (None, None, [])
    [shown] = wlops.json("retention", "--qa-days", "30", "--events-days", "forever")
    assert (shown["qa_retention_days"], shown["event_retention_days"]) == (30, None)
    code, _, err = wlops("retention", "--qa-days", "0")
    assert code == 2 and "a number of days" in err
    [erasure] = wlops.json("erase-user", user_id, "--reason", "left the company")
    assert erasure["kind"] == "user" and erasure["target"] == user_id
    assert [v["rows_after"] for v in erasure["dataset_versions"] if "rows_after" in v] == [0, 0, 0, 0]


class DroppingProxy:
    """A TCP proxy in front of the API that cuts the first task event stream right after its first `status` event, as a
    flaky network would: the follower has to reconnect with Last-Event-ID."""

    STATUS_EVENT = re.compile(rb"event: status\r?\n.*?\r?\n\r?\n", re.S)

    def __init__(self, api_url: str):
        self.upstream = ("127.0.0.1", int(api_url.rsplit(":", 1)[1]))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.event_requests: list[bytes] = []
        self.cut = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server, streaming = socket.create_connection(self.upstream), threading.Event()
            threading.Thread(target=self.forward_requests, args=(client, server, streaming), daemon=True).start()
            threading.Thread(target=self.forward_responses, args=(server, client, streaming), daemon=True).start()

    @staticmethod
    def received(sock: socket.socket):
        try:
            while data := sock.recv(65536):
                yield data
        except OSError:
            return

    @staticmethod
    def close(*socks: socket.socket) -> None:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def forward_requests(self, client: socket.socket, server: socket.socket, streaming: threading.Event) -> None:
        for data in self.received(client):
            if b"/events" in data:
                self.event_requests.append(data)
                streaming.set()  # before the request goes on, so its whole answer is watched
            server.sendall(data)
        self.close(client, server)

    def forward_responses(self, server: socket.socket, client: socket.socket, streaming: threading.Event) -> None:
        seen = b""
        for data in self.received(server):
            if streaming.is_set() and not self.cut:
                seen += data
                if match := self.STATUS_EVENT.search(seen):
                    self.cut = True
                    client.sendall(data[: len(data) - (len(seen) - match.end())])
                    break
            client.sendall(data)
        self.close(server, client)

    def stop(self) -> None:
        self.listener.close()


@pytest.fixture
def proxy(served):
    proxy = DroppingProxy(served[1])
    yield proxy
    proxy.stop()


async def test_a_task_is_created_started_and_watched_to_completion_with_real_workers(
    served, proxy, temporal_env, wlops, tiny_model_dir, tmp_path, monkeypatch
):
    # keep-alive comments between the events: watching must ignore them
    monkeypatch.setattr("fastapi.routing._PING_INTERVAL", 0.2)
    settings, url = served[0], proxy.url  # every command through the proxy, which cuts the first event stream

    cli, run = wlops.in_thread, wlops.json_in_thread  # the workers need this event loop free

    async with running_workers(temporal_env.client, ActivityContext.from_settings(settings)):
        await cli("login", "--api", url, "--username", "cli", "--password", TEST_PASSWORD)
        [dataset] = await run("datasets", "upload", str(write_dataset(tmp_path / "faq.jsonl")))
        dataset_id = dataset["dataset_id"]
        hp = [arg for key, value in TINY_HYPERPARAMETERS.items() for arg in ("--hp", f"{key}={value}")]
        code, out, err = await cli(
            "tasks",
            "create",
            "--standard",
            "--name",
            "cli task",
            "--dataset",
            dataset_id,
            "--model",
            tiny_model_dir,
            *hp,
            "--watch",
            "--json",
        )
        assert code == 0, err
        created, action, *events = [json.loads(line) for line in out.splitlines()]
        task_id = created["task_id"]
        assert (
            created["hyperparameters"]["max_steps"] == TINY_HYPERPARAMETERS["max_steps"]
            and action["task_id"] == task_id
        )

        # the stream was cut after its first status event; the follower resumed after the last id it had, missing
        # nothing
        assert proxy.cut and len(proxy.event_requests) == 2
        assert (
            b"last-event-id:" not in proxy.event_requests[0].lower()
            and b"last-event-id:" in proxy.event_requests[1].lower()
        )
        ids = [e["id"] for e in events]
        assert ids == sorted(set(ids)), ids
        kinds = [e["event"] for e in events]
        assert kinds[0] == "snapshot" and kinds.count("snapshot") == 1 and kinds[-1] == "final"
        assert events[-1]["data"]["status"] == "COMPLETED" and events[-1]["data"]["report_available"]
        # the snapshot holds the state the follower joined in (it may already be training); the rest came as events
        statuses = [events[0]["data"]["task"]["status"]] + [
            e["data"]["status"] for e in events if e["event"] == "status"
        ]
        assert statuses[-1] == "COMPLETED" and {"TRAINING", "EVALUATING"} <= set(statuses)
        assert any(e["event"] == "score" and e["data"]["iteration"] == 1 for e in events)
        assert any(e["event"] == "progress" and e["data"].get("step") for e in events)

        # a finished task: watched again, the state and the end at once
        code, out, err = await cli("tasks", "watch", task_id)
        assert code == 0 and "COMPLETED" in out, err
        # a continuous task watched live without --json: status changes and the score as they come, then the end
        code, out, err = await cli(
            "tasks",
            "create",
            "--continuous",
            "--name",
            "cli loop",
            "--dataset",
            dataset_id,
            "--model",
            tiny_model_dir,
            *hp,
            "--max-iterations",
            "1",
            "--threshold",
            "0.99",
            "--watch",
        )
        assert code == 0, err
        assert (
            "→ EVALUATING" in out
            and "iteration 1: test answers right" in out
            and "blended test score" in out
            and "\nCOMPLETED, score" in out
        ), out
        loop_id = re.search(r"task_id\s+(\w+)", out).group(1)
        [loop] = await run("tasks", "show", loop_id)
        assert (loop["mode"], loop["max_iterations"], loop["performance_threshold"], loop["status"]) == (
            "CONTINUOUS",
            1,
            0.99,
            "COMPLETED",
        )
        [report] = await run("tasks", "report", task_id)
        assert (
            report["task"]["task_id"] == task_id
            and report["final"]["split"] == "test"
            and [i["iteration"] for i in report["iterations"]] == [1]
        )
        code, out, _ = await cli("tasks", "report", task_id)
        assert code == 0 and "base model" in out and "iteration 1" in out
        assert {t["task_id"] for t in (await run("tasks", "list", "--status", "COMPLETED"))[0]["items"]} == {
            task_id,
            loop_id,
        }
        code, out, err = await cli("tasks", "pause", task_id)
        assert code == 1 and out == "" and "COMPLETED" in err  # an illegal transition: the API's 409
        code, out, err = await cli("tasks", "feedback-round", task_id, "--dataset", "no-such-dataset")
        assert (code, out) == (1, "") and "no-such-dataset" in err  # the API's 404
        code, out, err = await cli("tasks", "feedback-round", loop_id)
        assert code == 2 and "--dataset" in err  # a usage error

        for argv in (
            ("tasks", "watch", "no-such-task"),
            ("tasks", "report", "no-such-task"),
            ("tasks", "cancel", "no-such-task"),
        ):
            code, out, err = await cli(*argv)
            assert (code, out) == (1, "") and "task no-such-task not found" in err, argv

        # the registry: the final adapter became version 1 of the model named after the task
        assert {m["name"] for m in (await run("models", "list"))[0]["items"]} == {"cli-task", "cli-loop"}
        [version] = await run("models", "versions", "cli-task", "1")
        assert (version["task_id"], version["iteration"]) == (task_id, 1)
        code, out, err = await cli("models", "promote", "cli-task", "1", "--wait", "--json")
        [gate] = [json.loads(line) for line in out.splitlines()]
        assert gate["status"] in ("PROMOTED", "REFUSED") and code == (0 if gate["status"] == "PROMOTED" else 1), err
        assert (await run("models", "gates", "cli-task"))[0]["items"][0]["gate_id"] == gate["gate_id"]
        code, _, err = await cli("models", "rollback", "cli-task", "production")
        assert code == 1 and err.startswith("wlops: ")  # no earlier version to go back to
        [updated] = await run("models", "update", "cli-loop", "--rename", "cli-loop-2", "--description", "the loop")
        assert (updated["name"], updated["description"]) == ("cli-loop-2", "the loop")
        [deleted] = await run("models", "delete", "cli-loop-2")
        assert deleted == {"deleted": "cli-loop-2"}
        [graph] = await run("lineage", "model_version", "cli-task@1")
        assert {n["kind"] for n in graph["nodes"]} >= {"dataset_version", "task", "iteration", "model_version"}

        # a knowledge base: documents uploaded, built by the workers, searched
        [kb] = await run("knowledge", "create", "Ferro docs")
        documents = [str(p) for p in write_knowledge(tmp_path / "knowledge", n_topics=6)]
        uploaded = await run("knowledge", "upload", kb["knowledge_base_id"], *documents)
        assert [d["filename"] for d in uploaded] == ["services-1.md", "services-2.md"] and {
            d["status"] for d in uploaded
        } == {"PENDING"}

        async def shown_kb() -> dict:
            shown = (await run("knowledge", "show", kb["knowledge_base_id"]))[0]
            assert shown["status"] != "BUILD_FAILED", shown
            return shown

        shown = await poll_until(
            shown_kb,
            lambda shown: shown["status"] == "READY" and shown["version"] >= 1,
            timeout=180,
            interval=0.5,
            what="the knowledge base built",
        )
        assert {d["status"] for d in shown["documents"]} == {"INDEXED"}
        [found] = await run(
            "knowledge",
            "search",
            kb["knowledge_base_id"],
            "Which port does the backup service listen on?",
            "--top-k",
            "2",
        )
        assert len(found["results"]) == 2 and any("7400" in r["text"] for r in found["results"])


async def test_stale_rows_show_proposed_corrections_that_the_command_line_accepts(
    served, temporal_env, wlops, tmp_path
):
    """A changed document stales rows; the listing shows each one's proposed correction; `--accept-proposals` corrects
    the chosen rows with them in one new dataset version, with who and why, and refuses a row that is not stale."""
    settings, url = served
    ctx = ActivityContext.from_settings(settings)

    cli, run = wlops.in_thread, wlops.json_in_thread  # the workers need this event loop free

    guide, changed = tmp_path / "v1" / "guide.md", tmp_path / "v2" / "guide.md"
    for path, text in ((guide, GUIDE), (changed, CHANGED)):
        path.parent.mkdir()
        path.write_text(text)
    rows = tmp_path / "faq.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    async with running_workers(temporal_env.client, ctx):
        login(wlops, url)
        [kb] = await run("knowledge", "create", "guide")
        kb_id = kb["knowledge_base_id"]

        async def built(version: int) -> None:
            await poll_until(
                lambda: run("knowledge", "show", kb_id),
                lambda shown: shown[0]["status"] == "READY" and shown[0]["version"] >= version,
                timeout=120,
                interval=0.3,
                what=f"index version {version}",
            )

        await run("knowledge", "upload", kb_id, str(guide))
        await built(1)
        [dataset] = await run("datasets", "upload", str(rows))
        await run("tasks", "create", "--standard", "--name", "grounded", "--dataset", dataset["dataset_id"],
                  "--knowledge-base", kb_id)  # fmt: skip
        await run("knowledge", "upload", kb_id, str(changed))
        await built(2)
        listed = await poll_until(
            lambda: run("knowledge", "stale-rows", kb_id),
            lambda found: found[0]["total"] == 3,
            timeout=60,
            interval=0.3,
            what="stale rows listed",
        )
        items = {i["row_id"]: i for i in listed[0]["items"]}
        assert items["web-port"]["proposed_answer"] == "Open TCP port 7420, the web console's port."
        assert items["web-port"]["proposed_checks"] == [
            {"type": "number", "value": 7420.0, "unit": None, "tolerance": 0.0, "derived": False}
        ]
        assert items["ram"]["proposed_answer"] == "At least 8 GB of RAM."
        code, out, _ = await cli("knowledge", "stale-rows", kb_id)
        assert code == 0 and "7420" in out  # the proposed answer, in the table

        # refused, and nothing written: no reason, or a row that is not stale
        code, _, err = await cli("knowledge", "stale-rows", kb_id, "--accept-proposals")
        assert code == 1 and "needs --reason" in err
        code, _, err = await cli(
            "knowledge", "stale-rows", kb_id, "--accept-proposals", "--row", "sync-port", "--reason", "r"
        )
        assert code == 1 and "not a stale row of knowledge base" in err and "sync-port" in err
        assert (await run("datasets", "versions", dataset["dataset_id"]))[0]["head"] == 2

        [accepted] = await run(
            "knowledge", "stale-rows", kb_id, "--accept-proposals", "--row", "web-port", "--row", "ram",
            "--reason", "the guide's v2 changed these",
        )  # fmt: skip
        assert {r["row_id"] for r in accepted["accepted"]} == {"web-port", "ram"} and accepted["without_proposal"] == []
        [version] = accepted["dataset_versions"]
        assert (version["version"], version["reason"]) == (3, "the guide's v2 changed these") and version["created_by"]
        states = {i["row_id"]: i["state"] for i in (await run("knowledge", "stale-rows", kb_id))[0]["items"]}
        assert states == {"web-port": "corrected", "ram": "corrected", "f2-price": "stale"}
        head = {
            r["row_id"]: r for r in (await run("datasets", "rows", dataset["dataset_id"], "--version", "3"))[0]["items"]
        }
        assert head["web-port"]["answer"] == "Open TCP port 7420, the web console's port."
        assert not head["web-port"]["excluded"] and head["web-port"]["tags"] == []


async def test_suites_are_created_run_compared_and_exported_from_the_command_line(
    served, temporal_env, wlops, tiny_model_dir, tmp_path
):
    settings, url = served
    ctx = ActivityContext.from_settings(settings)

    cli, run = wlops.in_thread, wlops.json_in_thread  # the workers need this event loop free

    cases = tmp_path / "probe.jsonl"
    cases.write_text("".join(json.dumps(case) + "\n" for case in CASES))
    async with running_workers(temporal_env.client, ctx):
        [tokens] = await run("login", "--api", url, "--username", "cli", "--password", TEST_PASSWORD)
        model = RegisteredModel(id=new_id(), org_id=tokens["org_id"], name="tiny-bot", base_model=tiny_model_dir)
        with ctx.sessions() as session:
            session.add(model)
            session.commit()
        (adapter,) = random_adapters(tiny_model_dir, tmp_path / "adapters", ["a"], seed=5)
        add_version(ctx, model, 1, adapter)

        [created] = await run("suites", "create", "probe", str(cases), "--blocking", "--description", "smoke")
        assert (created["name"], created["version"], created["blocking"], created["case_count"]) == (
            "probe",
            1,
            True,
            4,
        )
        code, out, err = await cli("suites", "show", "probe")
        assert code == 0 and "port-json" in out and "refusal" in out and created["content_hash"] in out, err
        [listed] = await run("suites", "list")
        assert [s["name"] for s in listed["items"]] == ["probe"]
        [exported] = await run("suites", "export", "probe", "-o", str(tmp_path / "out.jsonl"))
        assert exported["cases"] == 4 and len((tmp_path / "out.jsonl").read_text().splitlines()) == 4

        code, out, err = await cli("suites", "run", "probe", "tiny-bot@1", "--wait", "--json")
        assert code == 1, err  # three cases fail on random weights
        first = json.loads(out)
        assert (first["status"], first["passed"], first["failed"], first["model"]) == ("COMPLETED", 1, 3, "tiny-bot@1")
        code, out, err = await cli("suites", "run", "probe", "tiny-bot@1", "--wait")
        assert code == 1 and "expected 4 gb" in out and "COMPLETED" in out, err
        [runs] = await run("suites", "runs", "probe")
        assert runs["total"] == 2
        [shown] = await run("suites", "runs", "probe", first["run_id"])
        assert [r["case_id"] for r in shown["results"]] == [c["id"] for c in CASES]
        [compared] = await run("suites", "compare", "probe")
        assert compared["counts"] == {"fixed": 0, "broken": 0, "still_wrong": 3, "still_right": 1}
        assert compared["before"]["run_id"] == first["run_id"]

        [required] = await run("models", "suites", "tiny-bot", "production", "probe")
        assert required == {"model_name": "tiny-bot", "alias": "production", "suites": ["probe"]}
        code, _, err = await cli("suites", "show", "nope")
        assert code == 1 and "suite nope not found" in err
        code, _, err = await cli("suites", "create", "bad", str(tmp_path / "out.jsonl"), "--description", "x")
        assert code == 0, err  # the export imports back
        (tmp_path / "bad.jsonl").write_text('{"id": "a", "prompt": "Q?"}\n')
        code, _, err = await cli("suites", "create", "worse", str(tmp_path / "bad.jsonl"))
        assert code == 1 and "case 'a': a case needs at least one assertion" in err


async def test_releases_are_started_listed_controlled_and_watched_from_the_command_line(
    served, temporal_env, wlops, tmp_path
):
    """With no traffic the release pauses for too little data; abort ends it (watch exits 1), a second one promoted by
    hand moves the alias (watch exits 0)."""
    from testkit.factories import version_row
    from testkit.registry import point

    settings, url = served
    ctx = ActivityContext.from_settings(settings)

    cli, run = wlops.in_thread, wlops.json_in_thread  # the workers need this event loop free

    async with running_workers(temporal_env.client, ctx, pools=("control",)):
        [tokens] = await run("login", "--api", url, "--username", "cli", "--password", TEST_PASSWORD)
        model = RegisteredModel(
            id=new_id(), org_id=tokens["org_id"], name="rel-bot", base_model="smollm2-135m-instruct"
        )
        with ctx.sessions() as session:
            session.add(model)
            session.flush()
            for number in (1, 2, 3):
                session.add(
                    version_row(
                        model_id=model.id,
                        org_id=model.org_id,
                        number=number,
                        task_id=new_id(),
                        adapter_key=f"a{number}/",
                    )
                )
            session.commit()
        point(ctx, model, "production", 1)
        quick = ("--bake-seconds", "0", "--min-requests", "1", "--max-wait-seconds", "1", "--steps", "10,100")
        [started] = await run("releases", "start", "rel-bot", "2", *quick)
        assert (started["candidate_version"], started["steps"], started["alias"]) == (2, [10, 100], "production")
        code, _, err = await cli("releases", "start", "rel-bot", "3", *quick)
        assert code == 1 and "is already" in err
        code, _, err = await cli("releases", "start", "rel-bot", "3", "--steps", "10,x")
        assert code == 2 and "whole percentages" in err
        paused = await poll_until(
            lambda: wlops.json_in_thread("releases", "list", "rel-bot", started["release_id"]),
            lambda shown: shown[0]["status"] == "PAUSED",
            timeout=60,
            what="the release paused",
        )
        assert "too little data" in paused[0]["reason"]
        code, out, _ = await cli("releases", "list", "rel-bot")
        assert code == 0 and "releases: 1" in out and "PAUSED" in out
        [aborted] = await run("releases", "abort", "rel-bot", started["release_id"], "--reason", "not today")
        assert aborted["status"] == "ABORTED" and aborted["decisions"][-1]["reason"] == "aborted: not today"
        code, out, _ = await cli("releases", "watch", "rel-bot", started["release_id"])
        assert code == 1 and "too little data" in out and "ABORTED" in out
        code, _, err = await cli("releases", "resume", "rel-bot", started["release_id"])
        assert code == 1 and "it is ABORTED" in err

        [second] = await run("releases", "start", "rel-bot", "3", *quick)
        await poll_until(
            lambda: wlops.json_in_thread("releases", "list", "rel-bot", second["release_id"]),
            lambda shown: shown[0]["status"] == "PAUSED",
            timeout=60,
            what="the second release paused",
        )
        [promoted] = await run("releases", "promote", "rel-bot", second["release_id"], "--reason", "looks fine")
        assert promoted["status"] == "PROMOTED"
        watched = await run("releases", "watch", "rel-bot", second["release_id"])
        assert [d["kind"] for d in watched] == ["start", "traffic", "pause", "promote"]
        [shown] = await run("models", "show", "rel-bot")
        assert shown["aliases"] == {"production": 3}
