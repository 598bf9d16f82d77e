"""A browser without a browser: one web-chat visitor driven through the chat's HTTP API,
with its own cookies, the way the page's script does it."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.auxil.helpers import eventually

CSRF = re.compile(r'data-csrf="([0-9a-f]+)"')


@dataclass
class Visitor:
    """One browser: its cookies, its page's CSRF token, and what the bot said to it."""

    base: str  # http://127.0.0.1:PORT
    kind: str = "chat"
    http: aiohttp.ClientSession = field(init=False)
    csrf: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def close(self) -> None:
        await self.http.close()

    @property
    def api(self) -> str:
        return f"{self.base}/chat/api/{self.kind}"

    async def open(self, path: str = "/chat/") -> aiohttp.ClientResponse:
        """Load a page (the cookie comes with the first one) and keep its CSRF token."""
        response = await self.http.get(f"{self.base}{path}")
        found = CSRF.search(await response.text())
        if found:
            self.csrf = found.group(1)
        return response

    async def post(self, fields: dict[str, Any], *, csrf: bool = True) -> aiohttp.ClientResponse:
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        return await self.http.post(f"{self.api}/send", json={"id": uuid.uuid4().hex, **fields},
                                    headers=headers)

    async def messages(self) -> list[dict[str, Any]]:
        """Everything the bot said to this visitor (the polling API, without waiting)."""
        response = await self.http.get(f"{self.api}/messages", params={"after": "0"})
        assert response.status == 200, response.status
        self.seen = (await response.json())["messages"]
        return self.seen

    def texts(self) -> list[str]:
        return [m["text"] for m in self.seen]

    async def wait(self, total: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until the bot has said total messages; return them all."""
        async def enough() -> bool:
            return len(await self.messages()) >= total
        await eventually(enough, timeout)
        return self.seen

    async def say(self, text: str, replies: int = 1) -> list[str]:
        """Type a message; return the replies it brings."""
        before = len(await self.messages())
        response = await self.post({"text": text})
        assert response.status == 200, await response.text()
        return [m["text"] for m in (await self.wait(before + replies))[before:]]

    def button(self, label: str) -> str:
        """The key of the latest button with this label."""
        for message in reversed(self.seen):
            for key, shown in message["choices"]:
                if shown == label:
                    return key
        raise AssertionError(f"no button {label!r} in {self.texts()}")

    async def tap(self, label: str, replies: int = 1) -> list[str]:
        """Press the latest button with this label; return the replies it brings."""
        key = self.button(label)
        before = len(self.seen)
        response = await self.post({"choice": key})
        assert response.status == 200, await response.text()
        return [m["text"] for m in (await self.wait(before + replies))[before:]]
