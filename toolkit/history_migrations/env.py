"""Alembic's entry point for the results store: the caller (history.Store) hands over an open
connection inside its transaction, so a migration and the lock around it commit together."""

from alembic import context

context.configure(connection=context.config.attributes["connection"], transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
