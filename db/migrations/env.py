from alembic import context
from sqlalchemy import create_engine

from db.models import Base

config = context.config
connection = config.attributes.get("connection")


def run(conn) -> None:
    context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=conn.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise SystemExit("no database: pass a connection in config.attributes or set sqlalchemy.url")
    with create_engine(url).connect() as conn:
        run(conn)
        conn.commit()
