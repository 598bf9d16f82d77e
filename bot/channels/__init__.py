"""Messenger adapters: thin translators between a messenger and the core."""
