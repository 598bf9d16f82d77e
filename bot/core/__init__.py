"""The small core: messages, context and router, inbox, outbox, worker, clock, settings, logs."""
