"""The read model: models (store.models), engine and migrations (store.db), queries (store.repo)."""
