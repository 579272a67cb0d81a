"""Alembic environment for the read model.

Called two ways: by ``store.db.run_migrations`` (which passes an open connection, already inside a
locked transaction, in ``config.attributes["connection"]``), and by the ``alembic`` CLI (URL from
``-x url=...``, the ``sqlalchemy.url`` option, or leadflow's settings / ``DATABASE_URL``).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from store.db import _make_sync_engine, normalize_url
from store.models import Base

config = context.config
target_metadata = Base.metadata

# CLI only: run_migrations builds its Config in code (no file), leaving the app's logging alone.
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = (
        config.attributes.get("url")
        or context.get_x_argument(as_dictionary=True).get("url")
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        from settings import get_settings

        url = get_settings().resolved_database_url()
    return normalize_url(url, async_driver=False)


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    if connection is not None:
        dialect = connection.dialect.name
    else:
        assert url is not None, "offline migrations need a URL"
        dialect = url.split(":", 1)[0].split("+")[0]
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=dialect == "sqlite",
        literal_binds=connection is None,
    )


def run_migrations_offline() -> None:
    _configure(url=_url())
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = _make_sync_engine(_url())
    try:
        with engine.connect() as conn:
            _configure(connection=conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
