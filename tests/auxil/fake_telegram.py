"""A loopback fake of the Telegram Bot API: records calls, serves updates, misbehaves on demand."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.auxil.loopback import Call, LoopbackServer

BOT_ID = 7000001
BOT_USERNAME = "safeschool_test_bot"


@dataclass
class Fault:
    """A scripted misbehaviour for the next `times` calls of a method."""

    status: int
    times: int
    retry_after: int | None = None
    description: str = "scripted failure"
    hang: bool = False
    chat_id: int | None = None  # only calls to this chat, when set


@dataclass
class FakeTelegram(LoopbackServer):
    """The fake server; `api_url` is what SAFESCHOOL_TELEGRAM_API_URL should be."""

    token: str = "123456:TEST-TOKEN"
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _next_update_id: int = 1000
    _next_message_id: int = 1
    _faults: dict[str, list[Fault]] = field(default_factory=dict)
    send_latency: float = 0.0  # simulated network time per send, to have sends in flight
    sent_total: int = 0  # successful sends, counted as they happen (cheap to poll)
    sent_per_chat: dict[int, int] = field(default_factory=dict)
    # A strict Bot API: a send is refused with 429 when more than strict_rate sends arrived in
    # the last second, or its chat already got one within the last second.
    strict_rate: int | None = None
    too_many: int = 0  # sends refused that way
    too_many_chat: int = 0  # … of which because their chat had one within the second
    _arrivals: deque = field(default_factory=deque)
    _chat_last: dict[str, float] = field(default_factory=dict)
    watch: set[int] = field(default_factory=set)  # chats whose arrival times are kept
    arrivals: dict[int, list[float]] = field(default_factory=dict)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # file_id: body, type
    updates_served: int = 0  # updates handed out by getUpdates (counting repeats)
    highest_confirmed: int = 0  # the highest offset a getUpdates call confirmed
    # setMyCommands as Telegram keeps it: (chat id or scope type, language code) -> commands
    menus: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        """Return the base URL python-telegram-bot should use."""
        return f"http://127.0.0.1:{self.port}/bot"

    def routes(self, app: web.Application) -> None:
        """Serve the Bot API methods."""
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)

    async def _download(self, request: web.Request) -> web.Response:
        """A file getFile pointed at (files/<file_id>), with the bot's token in the path."""
        self.record(Call("download", {"path": request.match_info["path"]}))
        file_id = request.match_info["path"].removeprefix("files/")
        if request.match_info["token"] != self.token or file_id not in self.files:
            return web.Response(status=404)
        body, kind = self.files[file_id]
        return web.Response(body=body, content_type=kind)

    # ---- scripting -----------------------------------------------------------------------

    def fail(self, method: str, status: int, *, times: int = 1, retry_after: int | None = None,
             description: str = "scripted failure", chat_id: int | None = None) -> None:
        """Answer the next `times` calls of method (to chat_id, if given) with an error."""
        self._faults.setdefault(method, []).append(
            Fault(status, times, retry_after, description, chat_id=chat_id))

    def outage(self, method: str = "sendMessage") -> None:
        """Answer every call of method with 500 until restore()."""
        self.fail(method, 500, times=10**9, description="Internal Server Error")

    def restore(self) -> None:
        """End every scripted failure."""
        self._faults.clear()

    def hang(self, method: str, *, times: int = 1) -> None:
        """Never answer the next `times` calls of method (until the fake closes)."""
        self._faults.setdefault(method, []).append(Fault(0, times, hang=True))

    def queue_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue a raw update for getUpdates (update_id is assigned if missing)."""
        if "update_id" not in update:
            update["update_id"] = self._next_update_id
            self._next_update_id += 1
        self._updates.append(update)
        asyncio.get_running_loop().create_task(self._notify())
        return update

    def user_message(self, user_id: int, text: str | None, first_name: str = "Test",
                     last_name: str | None = None, **extra: Any) -> dict[str, Any]:
        """Queue a private message; a leading /word gets a bot_command entity.

        extra adds raw fields: photo=[...], voice={...}, location={...}, sticker={...}.
        """
        message: dict[str, Any] = {
            "message_id": self._new_message_id(), "date": int(time.time()),
            "chat": {"id": user_id, "type": "private", "first_name": first_name},
            "from": _user(user_id, first_name, last_name), **extra,
        }
        if text is not None:
            message["caption" if ("photo" in extra or "voice" in extra) else "text"] = text
        if text and text.startswith("/"):
            length = len(text.split()[0])
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return self.queue_update({"message": message})

    def edit(self, user_id: int, text: str) -> dict[str, Any]:
        """Queue an edited_message update (someone changed a message they sent earlier); a
        leading /word gets a bot_command entity, as Telegram gives it."""
        message: dict[str, Any] = {
            "message_id": 1, "date": int(time.time()), "edit_date": int(time.time()),
            "chat": {"id": user_id, "type": "private"}, "from": _user(user_id, "Test", None),
            "text": text}
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0,
                                    "length": len(text.split()[0])}]
        return self.queue_update({"edited_message": message})

    def press(self, user_id: int, data: str, first_name: str = "Test") -> dict[str, Any]:
        """Queue a press on an inline button carrying callback data."""
        carrier = next((p.get("_message_id", 1) for p in reversed(self.sent(user_id))
                        if any(d == data for _, d in self.buttons(p))), 1)
        return self.queue_update({"callback_query": {
            "id": f"cq{self._next_update_id}", "from": _user(user_id, first_name, None),
            "chat_instance": str(user_id), "data": data,
            "message": {"message_id": carrier, "date": int(time.time()),
                        "chat": {"id": user_id, "type": "private"}, "text": "…"},
        }})

    # ---- inspection ----------------------------------------------------------------------

    def sent(self, chat_id: int | None = None, method: str = "sendMessage") -> list[dict[str, Any]]:
        """Return successful calls of a send method, optionally to one chat."""
        return [c.params for c in self.calls
                if c.method == method and c.params.get("_ok")
                and (chat_id is None or int(c.params["chat_id"]) == chat_id)]

    def texts(self, chat_id: int) -> list[str]:
        """Return the texts delivered to chat_id, in order."""
        return [p["text"] for p in self.sent(chat_id)]

    def buttons(self, params: dict[str, Any]) -> list[tuple[str, str]]:
        """Return (label, callback_data) of the inline keyboard of one sent message."""
        markup = params.get("reply_markup")
        if not markup:
            return []
        markup = json.loads(markup) if isinstance(markup, str) else markup
        return [(b["text"], b["callback_data"]) for row in markup["inline_keyboard"] for b in row]

    async def wait_texts(self, chat_id: int, count: int, timeout: float = 10.0) -> list[str]:
        """Wait until chat_id has received count messages; return all its texts."""
        await self.wait_for(lambda: len(self.texts(chat_id)) >= count, timeout)
        return self.texts(chat_id)

    # ---- the API -------------------------------------------------------------------------

    def _new_message_id(self) -> int:
        self._next_message_id += 1
        return self._next_message_id

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return dict(await request.json())
        if request.can_read_body:
            form = await request.post()
            # An uploaded file arrives as a FileField: keep its bytes (and its name).
            params = {k: (v.file.read() if isinstance(v, web.FileField) else v)
                      for k, v in form.items()}
            params.update({f"{k}_filename": v.filename for k, v in form.items()
                           if isinstance(v, web.FileField)})
            return params
        return dict(request.query)

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        call = Call(method, params)
        self.record(call)
        try:
            if (down := await self.outage_answer()) is not None:
                return down
            if request.match_info["token"] != self.token:
                return _error(401, "Unauthorized")
            faults = [f for f in self._faults.get(method, [])
                      if f.chat_id is None or str(f.chat_id) == str(params.get("chat_id"))]
            if faults:
                fault = faults[0]
                fault.times -= 1
                if fault.times <= 0:
                    self._faults[method].remove(fault)
                if fault.hang:
                    assert self._closing is not None
                    await self._closing.wait()
                    return _error(500, "closing")
                extra = {"parameters": {"retry_after": fault.retry_after}} \
                    if fault.retry_after else {}
                return _error(fault.status, fault.description, **extra)
            if self.strict_rate is not None and method.startswith("send") and \
                    self._refuse_burst(str(params.get("chat_id"))):
                self.too_many += 1
                return _error(429, "Too Many Requests: retry after 1",
                              parameters={"retry_after": 1})
            handler = getattr(self, f"api_{method}", None)
            if handler is None:
                return _error(404, f"Not Found: method {method}")
            result = await handler(params)
            if isinstance(result, web.Response):  # the method's own error
                return result
            if method.startswith("send"):
                params["_ok"] = True
                params["_message_id"] = result["message_id"]
                self.sent_total += 1
                chat = int(params["chat_id"])
                self.sent_per_chat[chat] = self.sent_per_chat.get(chat, 0) + 1
                if chat in self.watch:
                    self.arrivals.setdefault(chat, []).append(time.monotonic())
            return web.json_response({"ok": True, "result": result})
        finally:
            await self._notify()

    def _refuse_burst(self, chat: str) -> bool:
        now = time.monotonic()
        while self._arrivals and self._arrivals[0] <= now - 1.0:
            self._arrivals.popleft()
        last = self._chat_last.get(chat)
        if last is not None and now - last < 1.0:
            self.too_many_chat += 1
            return True
        if len(self._arrivals) >= (self.strict_rate or 0):
            return True
        self._arrivals.append(now)
        self._chat_last[chat] = now
        return False

    async def api_getMe(self, _params: dict[str, Any]) -> dict[str, Any]:
        return {"id": BOT_ID, "is_bot": True, "first_name": "SafeSchool",
                "username": BOT_USERNAME, "can_join_groups": False,
                "can_read_all_group_messages": False, "supports_inline_queries": False}

    async def api_deleteWebhook(self, _params: dict[str, Any]) -> bool:
        return True

    async def api_setWebhook(self, _params: dict[str, Any]) -> bool:
        return True

    async def api_setMyCommands(self, params: dict[str, Any]) -> bool | web.Response:
        commands = params.get("commands")
        commands = json.loads(commands) if isinstance(commands, str) else commands
        if not commands or any(not 1 <= len(c["command"]) <= 32 or
                               c["command"] != c["command"].lower() or
                               not 1 <= len(c["description"]) <= 256 for c in commands):
            return _error(400, "Bad Request: BOT_COMMAND_INVALID")
        scope = params.get("scope")
        scope = json.loads(scope) if isinstance(scope, str) else (scope or {"type": "default"})
        key = (str(scope.get("chat_id", scope["type"])), params.get("language_code") or "")
        self.menus[key] = [(c["command"], c["description"]) for c in commands]
        return True

    async def api_answerCallbackQuery(self, _params: dict[str, Any]) -> bool:
        return True

    async def api_editMessageReplyMarkup(self, _params: dict[str, Any]) -> bool:
        return True

    async def api_getFile(self, params: dict[str, Any]) -> dict[str, Any] | web.Response:
        file_id = str(params["file_id"])
        if file_id not in self.files:
            return _error(400, "Bad Request: invalid file_id")
        return {"file_id": file_id, "file_unique_id": file_id,
                "file_size": len(self.files[file_id][0]), "file_path": f"files/{file_id}"}

    async def api_sendMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.send_latency:
            await asyncio.sleep(self.send_latency)  # the fake's own network time
        return {"message_id": self._new_message_id(), "date": int(time.time()),
                "chat": {"id": int(params["chat_id"]), "type": "private"},
                "text": params.get("text", "")}

    async def _media(self, params: dict[str, Any], kind: str) -> dict[str, Any]:
        message = await self.api_sendMessage(params)
        file_id = params[kind] if isinstance(params[kind], str) else f"up{message['message_id']}"
        message[kind] = {"file_id": file_id, "file_unique_id": file_id}
        return message

    async def api_sendPhoto(self, params: dict[str, Any]) -> dict[str, Any]:
        message = await self._media(params, "photo")
        return message | {"photo": [message["photo"] | {"width": 1, "height": 1}]}

    async def api_sendVoice(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self._media(params, "voice")

    async def api_sendDocument(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self._media(params, "document")

    async def api_sendVideo(self, params: dict[str, Any]) -> dict[str, Any]:
        return await self._media(params, "video")

    async def api_getUpdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        if offset:
            self.highest_confirmed = max(self.highest_confirmed, offset - 1)
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        await self._long_poll(lambda: bool(self._updates),
                              min(float(params.get("timeout") or 0), 5.0))
        batch = list(self._updates[:100])
        self.updates_served += len(batch)
        return batch

    def pending_updates(self) -> int:
        """Updates queued and not yet confirmed by an offset."""
        return len(self._updates)


def _user(user_id: int, first_name: str, last_name: str | None) -> dict[str, Any]:
    user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name,
                            "language_code": "vi"}
    if last_name:
        user["last_name"] = last_name
    return user


def _error(status: int, description: str, **extra: Any) -> web.Response:
    body = {"ok": False, "error_code": status, "description": description, **extra}
    return web.json_response(body, status=status)
