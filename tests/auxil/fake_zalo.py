"""A loopback fake of the Zalo Bot API, as ZALO.md describes it (quirks included)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import aiohttp
from aiohttp import web

from tests.auxil.loopback import Call, LoopbackServer

_ids = count(1)


@dataclass
class ZaloFault:
    """A scripted reply for the next `times` calls of a method."""

    status: int
    error_code: int | None  # None: Zalo's edge sometimes answers {ok: false} with no code
    times: int
    description: str = "scripted failure"
    raw: str | None = None  # a body that is not JSON at all (an HTML error page)


@dataclass
class FakeZalo(LoopbackServer):
    """Records calls, serves one update per getUpdates (408 when none), misbehaves on demand.

    Every reply carries two Server headers, as Zalo's edge has been seen to send.
    """

    token: str = "1234567890:zalo-test-secret"
    webhook_url: str = ""
    webhook_secret: str = ""
    # "Nothing new" as HTTP 408 (what the documentation shows) or as 200 {ok: false,
    # error_code: 408} (what some clients report): the bot must read both as an empty poll.
    nothing_new_status: int = 408
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _faults: dict[str, list[ZaloFault]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        """Return what SAFESCHOOL_ZALO_API_URL should be."""
        return f"http://127.0.0.1:{self.port}/bot"

    def routes(self, app: web.Application) -> None:
        """Serve the Bot API methods and a small CDN for files users send."""
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/cdn/{name}", self._cdn)

    # ---- scripting -----------------------------------------------------------------------

    def fail(self, method: str, *, status: int = 200, error_code: int | None = 400,
             times: int = 1, description: str = "scripted failure",
             raw: str | None = None) -> None:
        """Answer the next calls of method with ok=false (HTTP status may still be 200), or
        with raw, a body that is not JSON."""
        self._faults.setdefault(method, []).append(
            ZaloFault(status, error_code, times, description, raw))

    def event(self, user_id: str, event_name: str = "message.text.received",
              message_id: str | None = None, **message: Any) -> dict[str, Any]:
        """Build a raw event as Zalo sends it (unwrapped)."""
        return {"event_name": event_name, "message": {
            "from": {"id": user_id, "display_name": "Người dùng Zalo", "is_bot": False},
            "chat": {"id": user_id, "chat_type": "PRIVATE"},
            "message_id": message_id or f"m{next(_ids):06d}",
            "date": int(time.time() * 1000), **message}}

    def user_text(self, user_id: str, text: str, **kwargs: Any) -> dict[str, Any]:
        """Queue a text message for getUpdates."""
        return self.queue(self.event(user_id, text=text, **kwargs))

    def queue(self, event: dict[str, Any]) -> dict[str, Any]:
        """Queue a raw event for getUpdates."""
        self._updates.append(event)
        asyncio.get_running_loop().create_task(self._notify())
        return event

    async def post_webhook(self, url: str, event: dict[str, Any], secret: str | None,
                           wrapped: bool = False) -> int:
        """Deliver an event to a webhook the way Zalo does; return the HTTP status."""
        body = {"ok": True, "result": event} if wrapped else event
        headers = {"X-Bot-Api-Secret-Token": secret} if secret is not None else {}
        async with aiohttp.ClientSession() as http, http.post(url, json=body,
                                                               headers=headers) as resp:
            return resp.status

    # ---- inspection ----------------------------------------------------------------------

    def sent(self, chat_id: str | None = None, method: str = "sendMessage") -> list[dict]:
        """Return successful sends, optionally to one chat."""
        return [c.params for c in self.calls if c.method == method and c.params.get("_ok")
                and (chat_id is None or c.params.get("chat_id") == chat_id)]

    def texts(self, chat_id: str) -> list[str]:
        """Return texts and captions delivered to chat_id, in order."""
        return [c.params.get("text") or c.params.get("caption") or "" for c in self.calls
                if c.method in ("sendMessage", "sendPhoto") and c.params.get("_ok")
                and c.params.get("chat_id") == chat_id]

    # ---- a CDN for files users send (URLs that may later expire) ------------------------

    cdn: dict[str, tuple[str, bytes]] = field(default_factory=dict)

    def cdn_url(self, name: str) -> str:
        """Return the URL the fake CDN serves name at."""
        return f"http://127.0.0.1:{self.port}/cdn/{name}"

    async def _cdn(self, request: web.Request) -> web.Response:
        item = self.cdn.get(request.match_info["name"])
        if item is None:
            return web.Response(status=404, text="expired")
        return web.Response(body=item[1], content_type=item[0])

    # ---- the API -------------------------------------------------------------------------

    def _reply(self, status: int, body: dict[str, Any]) -> web.Response:
        response = web.json_response(body, status=status)
        response.headers.add("Server", "ZaloEdge")
        response.headers.add("Server", "nginx")
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.can_read_body and request.content_type == "application/json":
            params = dict(await request.json())
        elif request.can_read_body:
            params = dict(await request.post())
        else:
            params = dict(request.query)
        self.record(Call(method, params))
        try:
            if request.match_info["token"] != self.token:
                return self._reply(401, {"ok": False, "error_code": 401,
                                         "description": "Unauthorized"})
            faults = self._faults.get(method)
            if faults:
                fault = faults[0]
                fault.times -= 1
                if fault.times <= 0:
                    faults.pop(0)
                if fault.raw is not None:
                    response = web.Response(text=fault.raw, status=fault.status,
                                            content_type="text/html")
                    return response
                body = {"ok": False, "description": fault.description}
                if fault.error_code is not None:
                    body["error_code"] = fault.error_code
                return self._reply(fault.status, body)
            handler = getattr(self, f"api_{method}", None)
            if handler is None:
                return self._reply(404, {"ok": False, "error_code": 404,
                                         "description": "method not found"})
            status, result = await handler(params)
            if status != 200:
                http = self.nothing_new_status if status == 408 else status
                return self._reply(http, {"ok": False, "error_code": status,
                                          "description": result})
            if method.startswith("send"):
                params["_ok"] = True
            return self._reply(200, {"ok": True, "result": result})
        finally:
            await self._notify()

    async def api_getMe(self, _p: dict[str, Any]) -> tuple[int, Any]:
        return 200, {"id": "bot123", "account_name": "SafeSchool", "account_type": "BASIC",
                     "can_join_groups": False}

    async def api_getWebhookInfo(self, _p: dict[str, Any]) -> tuple[int, Any]:
        if not self.webhook_url:
            return 404, "webhook not set"
        return 200, {"url": self.webhook_url, "updated_at": int(time.time() * 1000)}

    async def api_setWebhook(self, params: dict[str, Any]) -> tuple[int, Any]:
        secret = str(params.get("secret_token") or "")
        if not 8 <= len(secret) <= 256:
            return 400, "secret_token must be 8-256 characters"
        if not str(params.get("url") or "").startswith("https://"):
            return 400, "url must be https"
        self.webhook_url, self.webhook_secret = str(params["url"]), secret
        return 200, {"url": self.webhook_url, "updated_at": int(time.time() * 1000)}

    async def api_deleteWebhook(self, _p: dict[str, Any]) -> tuple[int, Any]:
        self.webhook_url = ""
        return 200, {"url": "", "updated_at": int(time.time() * 1000)}

    async def api_getUpdates(self, params: dict[str, Any]) -> tuple[int, Any]:
        if self.webhook_url:
            return 409, "webhook is active"  # polling and webhook exclude each other
        await self._long_poll(lambda: bool(self._updates),
                              min(float(params.get("timeout") or 0), 2.0))
        if not self._updates:
            return 408, "no update"
        return 200, self._updates.pop(0)

    async def api_sendMessage(self, params: dict[str, Any]) -> tuple[int, Any]:
        text = str(params.get("text") or "")
        if not 1 <= len(text) <= 2000:
            return 400, "text must be 1-2000 characters"
        return 200, {"message_id": f"out{next(_ids)}", "date": int(time.time() * 1000)}

    async def api_sendPhoto(self, params: dict[str, Any]) -> tuple[int, Any]:
        if not str(params.get("photo", "")).startswith(("http://", "https://")):
            return 400, "photo must be a public URL"
        return 200, {"message_id": f"out{next(_ids)}", "date": int(time.time() * 1000)}
