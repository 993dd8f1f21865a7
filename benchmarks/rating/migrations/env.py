"""Alembic environment of the rating study: runs on the connection that :func:`benchmarks.rating.db.migrate`
passes in ``config.attributes["connection"]``."""
from alembic import context

from benchmarks.rating.db import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the rating study's migrations through benchmarks.rating.db.migrate(engine)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
