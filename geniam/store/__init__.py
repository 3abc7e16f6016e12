"""Persistence behind IStore: SQLite (embedded) and PostgreSQL."""
