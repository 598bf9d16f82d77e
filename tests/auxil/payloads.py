"""Real-shaped update payloads (tests/fixtures/*.json), with only ids and text changed."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@cache
def _load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def telegram_message(update_id: int, chat_id: int, text: str) -> dict[str, Any]:
    """A Telegram update: a private message from chat_id (a /command gets its entity)."""
    update = copy.deepcopy(_load("telegram_message"))
    update["update_id"] = update_id
    message = update["message"]
    message["message_id"] = update_id % 100_000
    message["from"]["id"] = message["chat"]["id"] = chat_id
    message["text"] = text
    if text.startswith("/"):
        message["entities"] = [{"offset": 0, "length": len(text.split()[0]),
                                "type": "bot_command"}]
    else:
        message.pop("entities", None)
    return update


def zalo_message(message_id: str, user_id: str, text: str) -> dict[str, Any]:
    """A Zalo event as live webhooks post it: a text from user_id."""
    event = copy.deepcopy(_load("zalo_message"))
    message = event["message"]
    message["message_id"] = message_id
    message["from"]["id"] = message["chat"]["id"] = user_id
    message["text"] = text
    return event
