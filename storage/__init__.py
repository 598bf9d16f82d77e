"""Persistence: models, engine, migrations and the directory."""
