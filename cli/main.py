"""`wlops`: run the API, a worker pool, the whole embedded stack, or the demo; manage users and the database."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time

from cli.resources import add_resource_commands
from core.access import Role
from core.settings import POOL_TASK_QUEUES, WORKER_POOLS, Settings, configure_process_environment, get_settings
from observability import configure_process


def upgraded_settings() -> Settings:
    """The process's settings, after bringing its database up to date: migrations run where a process starts."""
    from db.session import migrate

    settings = get_settings()
    migrate(settings.resolved_database_url)
    return settings


def cmd_api(_: argparse.Namespace) -> None:
    import uvicorn

    from api.main import create_app

    settings = upgraded_settings()
    configure_process("api", settings)
    # log_config=None: uvicorn's own records go through the process's (JSON) handler too
    uvicorn.run(
        create_app(settings), host=settings.api_host, port=settings.api_port, log_level="warning", log_config=None
    )


def cmd_serve(_: argparse.Namespace) -> None:
    import uvicorn

    from serving.app import create_serving_app

    settings = upgraded_settings()
    configure_process("serve", settings)
    uvicorn.run(
        create_serving_app(settings),
        host=settings.serve_host,
        port=settings.serve_port,
        log_level="warning",
        log_config=None,
    )


def cmd_mcp(args: argparse.Namespace) -> None:
    from mcp_server.server import create_mcp_server, http_app

    settings = upgraded_settings()
    configure_process("mcp", settings)  # logs go to stderr: over stdio, stdout carries the protocol alone
    if args.transport == "stdio":
        if not settings.api_key:
            sys.exit("wlops mcp --transport stdio: set WLOPS_API_KEY to an API key (or an access token) to act as")
        create_mcp_server(settings, credential=settings.api_key).run("stdio")
        return
    import uvicorn

    host, port = args.host or settings.mcp_host, args.port if args.port is not None else settings.mcp_port
    app = http_app(settings, host)
    uvicorn.run(app, host=host, port=port, log_level="warning", log_config=None)


def cmd_worker(args: argparse.Namespace) -> None:
    from workers.pools import run_pool

    settings = upgraded_settings()
    if args.metrics_port is not None:
        settings = settings.model_copy(update={"worker_metrics_port": args.metrics_port})
    configure_process(f"worker-{args.pool}", settings)

    async def main() -> None:
        task = asyncio.ensure_future(run_pool(args.pool, settings))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    port = settings.worker_metrics_port_for(args.pool)
    logging.getLogger("workers").info(
        "worker pool %r polling %s on %s%s",
        args.pool,
        ", ".join(POOL_TASK_QUEUES[args.pool]),
        settings.resolved_temporal_address,
        f"; metrics at http://{settings.worker_metrics_host}:{port}/metrics" if port else "",
    )
    asyncio.run(main())


def cmd_dev(_: argparse.Namespace) -> None:
    from cli.stack import Stack
    from cli.users import login_hint
    from observability.logs import readable

    settings = get_settings()
    with Stack(settings) as stack:
        metrics = ", ".join(f"{pool} :{settings.worker_metrics_port_for(pool)}" for pool in WORKER_POOLS)
        print(
            "WLOps is running.\n"
            f"  console and API: http://{settings.api_host}:{settings.api_port}/ (OpenAPI: /docs, metrics: /metrics)\n"
            f"  serving:         http://{settings.serve_host}:{settings.serve_port}/v1 (OpenAI-compatible)\n"
            f"  Temporal gRPC:   {settings.resolved_temporal_address}\n  Temporal Web UI: {settings.temporal_ui_url}\n"
            f"  worker metrics:  {metrics}\n  logs:            {stack.log_dir} (JSON lines; shown below as text)\n"
            f"{login_hint(settings)}\nPress Ctrl-C to stop.",
            flush=True,
        )
        try:
            while True:
                stack.check()
                for service, line in stack.new_log_lines():
                    print(f"{service:<16} {readable(line)}", flush=True)
                time.sleep(1)
        except KeyboardInterrupt:
            print("\nstopping…", flush=True)


def cmd_demo(args: argparse.Namespace) -> None:
    from cli.demo import run_demo

    sys.exit(run_demo(get_settings(), iterations=args.iterations, max_steps=args.max_steps))


def cmd_db_upgrade(_: argparse.Namespace) -> None:
    settings = upgraded_settings()
    print(f"database at {settings.resolved_database_url} is up to date")


def cmd_user_create(args: argparse.Namespace) -> None:
    import getpass

    from auth.accounts import AccountError
    from cli.users import create_user

    password = args.password if args.password is not None else getpass.getpass(f"password for {args.username}: ")
    try:
        setup = create_user(upgraded_settings(), args.username, password, args.org, Role(args.role))
    except AccountError as exc:
        sys.exit(f"wlops user create: {exc}")
    print(
        f"{'created' if setup.created_user else 'updated'} user {setup.user.username!r} ({setup.user.id}) "
        f"as {setup.role.value} of "
        f"{'new ' if setup.created_org else ''}organization {setup.org.name!r} ({setup.org.id})"
    )


def cmd_settings_doc(args: argparse.Namespace) -> None:
    from pathlib import Path

    from core.settings import settings_markdown

    text = settings_markdown()
    if args.write is None:
        sys.stdout.write(text)
    else:
        Path(args.write).write_text(text)
        print(f"wrote {args.write}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="wlops", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("api", help="serve the HTTP API").set_defaults(func=cmd_api)
    commands.add_parser("serve", help="serve the OpenAI-compatible chat completions of registered models").set_defaults(
        func=cmd_serve
    )
    mcp = commands.add_parser(
        "mcp", help="serve the Model Context Protocol: read and operate models, tasks and suites as an API caller"
    )
    mcp.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    mcp.add_argument("--host", help="http: where to listen (default WLOPS_MCP_HOST)")
    mcp.add_argument("--port", type=int, help="http: the port (default WLOPS_MCP_PORT); the endpoint is /mcp")
    mcp.set_defaults(func=cmd_mcp)
    worker = commands.add_parser("worker", help="run one worker pool")
    worker.add_argument("--pool", choices=sorted(POOL_TASK_QUEUES), required=True)
    worker.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics here (default: the pool's own port, 9100-9104; 0: none)",
    )
    worker.set_defaults(func=cmd_worker)
    commands.add_parser("dev", help="run the embedded stack until Ctrl-C").set_defaults(func=cmd_dev)
    demo = commands.add_parser("demo", help="run a continuous-learning task on the sample dataset, end to end")
    demo.add_argument("--iterations", type=int, default=2)
    demo.add_argument("--max-steps", type=int, default=None, help="cap training steps per iteration")
    demo.set_defaults(func=cmd_demo)
    database = commands.add_parser("db", help="manage the metadata database").add_subparsers(
        dest="db_command", required=True
    )
    database.add_parser(
        "upgrade", help="apply every database migration (each process also does at start)"
    ).set_defaults(func=cmd_db_upgrade)
    user = commands.add_parser("user", help="manage users").add_subparsers(dest="user_command", required=True)
    create = user.add_parser("create", help="create a user (and the organization if needed) with a role in it")
    create.add_argument("username")
    create.add_argument("--password", help="prompted for when left out")
    create.add_argument("--org", required=True, help="organization name (created if it does not exist)")
    create.add_argument("--role", choices=[r.value for r in Role], default="member")
    create.set_defaults(func=cmd_user_create)
    settings_doc = commands.add_parser(
        "settings-doc", help="print the settings reference (docs/settings.md), generated from core/settings.py"
    )
    settings_doc.add_argument("--write", metavar="PATH", help="write it to PATH instead (e.g. docs/settings.md)")
    settings_doc.set_defaults(func=cmd_settings_doc)
    add_resource_commands(commands)
    args = parser.parse_args(argv)
    configure_process_environment()
    args.func(args)


if __name__ == "__main__":
    main()
