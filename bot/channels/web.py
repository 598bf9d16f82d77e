"""The web chat: a third channel, served by the app's own HTTP server at /chat.

A browser is a messenger account like a Telegram chat: it is known by an unguessable token in
a cookie (`HttpOnly`, `SameSite=Strict`), and what it sends goes through the same inbox
(stored before the page hears "ok"), the same handlers and the same outbox and worker as
every channel. "Sending" to a browser means storing the message in `web_messages` (its
transcript) and pushing it to the page if it is open (WebSocket; the page falls back to
polling). The pages are plain HTML, CSS and JavaScript from this package: no CDN, no build.

Two identities live side by side in one browser: the chat's (`/chat/`: register with a code,
report, `/link` to a messenger account) and the public one (`/chat/s/<school>`: anyone may
report for a school whose public page an admin turned on, always anonymously; `/chat/f`:
come back with the reference and the secret follow-up code). They are separate accounts, so
a teacher who reports in public on a shared computer stays anonymous.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import secrets
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import BodyPartReader, WSMsgType, web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.core.channel import Accept, Profile, TransientError, register_profile
from bot.core.clock import Clock
from bot.core.i18n import Translator
from bot.core.messages import PUBLIC_VISITOR, Attachment, Inbound, Outbound
from bot.core.settings import LANGUAGES, Settings
from bot.services.cases import ATTACHMENT_MAX_BYTES
from storage import crypto
from storage.media import LOCAL_PREFIX
from storage.models import School, WebMessage

_LOGGER = logging.getLogger(__name__)
NAME = "web"
HERE = Path(__file__).parent / "webchat"
KINDS = ("chat", "public")  # the chat's identity and the public pages' identity
COOKIES = {"chat": "safeschool_chat", "public": "safeschool_public"}
TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # 32 random bytes, URL-safe base64
EVENT_ID = re.compile(r"^[A-Za-z0-9-]{8,64}$")
CSRF_HEADER = "X-CSRF-Token"
TEXT_MAX = 4000
HISTORY = 200  # messages the page shows again on return
UPLOAD_SLACK = 64 * 1024  # the multipart envelope around a file
POLL_SECONDS = 25.0  # a long poll's wait for a new message
MEDIA_KINDS = (("image/", "photo"), ("audio/", "voice"), ("video/", "video"),
               ("application/pdf", "document"))
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
                               "media-src 'self' blob:; style-src 'self'; script-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'self'; "
                               "form-action 'self'; base-uri 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, no-store",
}

# The browser has real buttons; its text limit is generous (a split still keeps every part).
PROFILE = Profile(NAME, text_limit=TEXT_MAX, caption_limit=TEXT_MAX, uploads=True)
register_profile(PROFILE)


def visitor_of(kind: str, token: str) -> str:
    """The account's id for a browser token: a digest, so the database never holds what the
    cookie holds, and the chat and public identities of one browser never meet."""
    digest = hashlib.sha256(f"{kind}:{token}".encode()).hexdigest()[:40]
    return (PUBLIC_VISITOR if kind == "public" else "c-") + digest


def media_kind(mime: str) -> str | None:
    """How a file's type is shown and stored (photo, voice, video, document), or None."""
    for prefix, kind in MEDIA_KINDS:
        if mime.startswith(prefix):
            return kind
    return None


class Window:
    """At most `limit` events per key in any `seconds` (in memory: one process's view)."""

    def __init__(self, limit: int, seconds: float,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.seconds, self._now = limit, seconds, now
        self._events: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, key: str) -> bool:
        """Count one event for key; False (and not counted) when over the limit."""
        now = self._now()
        events = self._events[key]
        while events and events[0] <= now - self.seconds:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        if len(self._events) > 10_000:  # forget quiet addresses
            for stale in [k for k, v in self._events.items() if not v][:5_000]:
                del self._events[stale]
        return True


def _message_json(row_id: int, payload: dict[str, Any]) -> dict[str, Any]:
    """What the page receives for one message: never a server path."""
    out: dict[str, Any] = {"id": row_id, "text": payload.get("text", ""),
                           "choices": payload.get("choices", [])}
    media = payload.get("media")
    if media:
        kind, ref, _channel, path = media
        if path or str(ref).startswith(LOCAL_PREFIX):
            out["media"] = {"kind": kind, "file": row_id}
        elif str(ref).startswith(("http://", "https://")):
            out["media"] = {"kind": kind, "url": ref}
        else:
            out["media"] = {"kind": kind}
    return out


@dataclass
class Demo:
    """The sandbox's personas (`safeschool demo`): each a web-chat account reached by a
    path of its own instead of a cookie, so one page can show them side by side."""

    personas: dict[str, str]  # slug → browser token
    labels: dict[str, str]  # slug → who they are, in the trainer's words
    fast: Callable[[bool], None]  # the fast clock's switch
    is_fast: Callable[[], bool]


class WebChannel:
    """The web chat: the channel the worker sends through and the pages people use."""

    name = NAME

    def __init__(self, settings: Settings, accept: Accept,
                 sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self.settings = settings
        self.accept = accept
        self.sessions = sessions
        self.clock = clock
        self._listeners: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self._sockets: set[web.WebSocketResponse] = set()
        relay = settings.relay_key.get_secret_value() if settings.relay_key else ""
        self._csrf_key = hashlib.sha256(b"safeschool-web-csrf:" + relay.encode()).digest() \
            if relay else secrets.token_bytes(32)
        self.public_messages = Window(settings.web_public_per_minute, 60.0)
        self.public_newcomers = Window(settings.web_public_new_per_hour, 3600.0)
        self._templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE), undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(default=True), trim_blocks=True,
            lstrip_blocks=True)
        self._receiving = True
        self.demo: Demo | None = None  # set by `safeschool demo` before the app starts

    # ---- the Channel protocol ---------------------------------------------------------------

    async def send(self, chat_id: str, message: Outbound) -> str:
        """Keep the message in the visitor's transcript and push it to their open pages."""
        payload = message.to_payload()
        try:
            async with self.sessions() as session, session.begin():
                row = WebMessage(visitor=chat_id, payload=payload, created_at=self.clock.now())
                session.add(row)
                await session.flush()
                row_id = row.id
        except Exception as exc:  # the worker retries: the database is this "messenger"
            raise TransientError(f"web transcript unavailable ({type(exc).__name__})") from exc
        for queue in list(self._listeners.get(chat_id, ())):
            queue.put_nowait(_message_json(row_id, payload))
        return str(row_id)

    def pace(self, chat_id: str, priority: int = 0) -> AbstractAsyncContextManager[None]:
        """No messenger limits a browser."""
        return nullcontext()

    def chat_ready_in(self, chat_id: str) -> float:
        """A browser may always receive."""
        return 0.0

    async def probe(self) -> None:
        """The web chat is up while this process is."""

    async def start(self) -> None:
        """Nothing to log in to: the routes are on the app's server."""
        self._receiving = True
        _LOGGER.info("Web chat at %s/chat/", self.settings.console_base)

    async def stop_receiving(self) -> None:
        """Take no new messages; close the open pages' sockets (they reconnect elsewhere)."""
        self._receiving = False
        for socket in list(self._sockets):
            await socket.close()

    async def close(self) -> None:
        """Nothing to release."""

    # ---- identity ---------------------------------------------------------------------------

    def csrf_for(self, token: str) -> str:
        """The page's CSRF token: bound to the browser's own token, checked on every POST."""
        return hmac.new(self._csrf_key, token.encode(), hashlib.sha256).hexdigest()[:32]

    def _token(self, request: web.Request, kind: str) -> str | None:
        persona = request.match_info.get("persona")
        if persona is not None:
            token = self.demo.personas.get(persona) if self.demo is not None else None
            if token is None:
                raise web.HTTPNotFound()
            return token
        token = request.cookies.get(COOKIES[kind], "")
        return token if TOKEN.match(token) else None

    def _set_cookie(self, response: web.StreamResponse, kind: str, token: str) -> None:
        response.set_cookie(COOKIES[kind], token, path="/chat", httponly=True,
                            samesite="Strict", max_age=365 * 24 * 3600,
                            secure=self.settings.console_base.startswith("https://"))

    def _visitor(self, request: web.Request, kind: str, *, post: bool) -> tuple[str, str]:
        """The visitor behind an API request (401 without an identity, 403 on a bad CSRF)."""
        token = self._token(request, kind)
        if token is None:
            raise web.HTTPUnauthorized(text="no web chat identity: open the chat page first")
        if post and not hmac.compare_digest(request.headers.get(CSRF_HEADER, ""),
                                            self.csrf_for(token)):
            _LOGGER.warning("Web chat: a POST without a valid CSRF token")
            raise web.HTTPForbidden(text="bad CSRF token")
        return token, visitor_of(kind, token)

    @staticmethod
    def _address(request: web.Request) -> str:
        return request.remote or "?"

    # ---- pages ------------------------------------------------------------------------------

    def routes(self) -> list[web.AbstractRouteDef]:
        """The chat's pages, its API and its files, for the app's server."""
        api = "/chat/api/{kind:chat|public}"
        demo = [] if self.demo is None else [
            web.get("/chat/demo", self.demo_page),
            web.post("/chat/demo/clock", self.demo_clock),
            web.get("/chat/demo/{persona}/", self.persona_page),
            web.post("/chat/demo/{persona}" + api[5:] + "/send", self.api_send),
            web.post("/chat/demo/{persona}" + api[5:] + "/upload", self.api_upload),
            web.get("/chat/demo/{persona}" + api[5:] + "/messages", self.api_messages),
            web.get("/chat/demo/{persona}" + api[5:] + "/ws", self.api_socket),
            web.get("/chat/demo/{persona}" + api[5:] + "/file/{id:\\d+}", self.api_file),
        ]
        return [*demo,
            web.get("/chat", _to_chat),
            web.get("/chat/", self.chat_page),
            web.get("/chat/s/{code}", self.public_page),
            web.get("/chat/f", self.followup_page),
            web.static("/chat/static", HERE / "static"),
            web.post(f"{api}/send", self.api_send),
            web.post(f"{api}/upload", self.api_upload),
            web.get(f"{api}/messages", self.api_messages),
            web.get(f"{api}/ws", self.api_socket),
            web.get(api + "/file/{id:\\d+}", self.api_file),
        ]

    def _language(self, request: web.Request) -> str:
        wanted = request.query.get("lang")
        if wanted in LANGUAGES:
            return wanted
        accepted = request.headers.get("Accept-Language", "")
        if accepted.lower().startswith("en"):
            return "en"
        return self.settings.default_language

    def _page(self, request: web.Request, kind: str, *, status: int = 200,
              **context: Any) -> web.Response:
        token = self._token(request, kind)
        new = token is None
        if new and kind == "public" and \
                not self.public_newcomers.allow(self._address(request)):
            raise web.HTTPTooManyRequests(text="too many new visitors from this address")
        if token is None:
            token = secrets.token_urlsafe(32)
        persona = request.match_info.get("persona")
        prefix = f"/chat/demo/{persona}" if persona else "/chat"
        language = self._language(request)
        t = Translator(language, NAME)
        html = self._templates.get_template("chat.html").render(
            t=t, kind=kind, csrf=self.csrf_for(token), language=language,
            max_bytes=ATTACHMENT_MAX_BYTES, api=f"{prefix}/api/{kind}",
            other_language="en" if language == "vi" else "vi", **context)
        response = web.Response(text=html, content_type="text/html", status=status,
                                headers=HEADERS)
        if new and persona is None:
            self._set_cookie(response, kind, token)
        return response

    async def chat_page(self, request: web.Request) -> web.Response:
        """The web chat: register, report, follow cases, like on a messenger."""
        return self._page(request, "chat", start=None, title_key="web_chat.title",
                          intro_key="web_chat.intro")

    async def public_page(self, request: web.Request) -> web.Response:
        """A school's public report page, if an admin turned it on (otherwise 404, the same
        for a school that does not exist: the page reveals nothing)."""
        code = request.match_info["code"]
        async with self.sessions() as session:
            school = (await session.execute(
                select(School).where(School.code == code))).scalar_one_or_none()
            name = school.name if school is not None and school.public_reports else None
        if name is None:
            language = self._language(request)
            html = self._templates.get_template("closed.html").render(
                t=Translator(language, NAME), language=language)
            return web.Response(text=html, content_type="text/html", status=404,
                                headers=HEADERS)
        return self._page(request, "public", start=["public", code], school=name,
                          title_key="web_chat.public.title", intro_key="web_chat.public.intro")

    async def followup_page(self, request: web.Request) -> web.Response:
        """Come back to a public report with its reference and follow-up code."""
        return self._page(request, "public", start=None, followup=True,
                          title_key="web_chat.followup.title",
                          intro_key="web_chat.followup.intro")

    async def persona_page(self, request: web.Request) -> web.Response:
        """One demo persona's chat (inside the demo page's frame)."""
        self._token(request, "chat")  # 404 for a persona that is not there
        assert self.demo is not None
        return self._page(request, "chat", start=None, title_key="web_chat.title",
                          intro_key="demo.persona_intro",
                          who=self.demo.labels[request.match_info["persona"]])

    async def demo_page(self, request: web.Request) -> web.Response:
        """The trainer's page: every persona side by side, and the fast clock's switch."""
        assert self.demo is not None
        language = self._language(request)
        html = self._templates.get_template("demo.html").render(
            t=Translator(language, NAME), language=language, personas=self.demo.labels,
            csrf=self.csrf_for("demo"), fast=self.demo.is_fast())
        return web.Response(text=html, content_type="text/html", headers=HEADERS)

    async def demo_clock(self, request: web.Request) -> web.Response:
        """Switch the demo's fast clock (minutes become seconds) on or off."""
        assert self.demo is not None
        if not hmac.compare_digest(request.headers.get(CSRF_HEADER, ""),
                                   self.csrf_for("demo")):
            raise web.HTTPForbidden(text="bad CSRF token")
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="not JSON") from None
        self.demo.fast(isinstance(body, dict) and bool(body.get("fast")))
        return web.json_response({"fast": self.demo.is_fast()}, headers=HEADERS)

    # ---- what the browser sends -------------------------------------------------------------

    def _limit_public(self, request: web.Request, kind: str) -> None:
        if kind == "public" and not self.public_messages.allow(self._address(request)):
            raise web.HTTPTooManyRequests(text="too many messages from this address")

    def _open(self) -> None:
        if not self._receiving:
            raise web.HTTPServiceUnavailable(text="stopping; send again in a moment")

    async def _store(self, inbound: Inbound) -> web.Response:
        """Keep the message in the inbox, then say ok (503: nothing kept, send again)."""
        try:
            await self.accept([inbound], [])
        except Exception as exc:
            _LOGGER.warning("Could not store a web chat message (%s); the page sends it again",
                            type(exc).__name__)
            raise web.HTTPServiceUnavailable(text="try again") from exc
        return web.json_response({"ok": True}, headers=HEADERS)

    async def api_send(self, request: web.Request) -> web.Response:
        """A text, a command, a button or a location: {"id", "text" | "choice" |
        "command"+"args" | "location": [lat, lon]}; "id" makes a retry harmless."""
        self._open()
        kind = request.match_info["kind"]
        _token, visitor = self._visitor(request, kind, post=True)
        self._limit_public(request, kind)
        if (request.content_length or 0) > 16 * 1024:
            raise web.HTTPRequestEntityTooLarge(max_size=16 * 1024,
                                                actual_size=request.content_length or 0)
        try:
            body = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="not JSON") from None
        if not isinstance(body, dict) or not EVENT_ID.match(str(body.get("id", ""))):
            raise web.HTTPBadRequest(text="a message needs an id")
        common = {"channel": NAME, "external_id": visitor, "event_id": str(body["id"])}
        inbound = _read_message(common, body)
        if inbound is None:
            raise web.HTTPBadRequest(text="nothing to send")
        return await self._store(inbound)

    async def api_upload(self, request: web.Request) -> web.Response:
        """A photo, voice note, video or PDF (multipart "file", "id", optional "caption"):
        its size is checked from the headers before the body is read, and again as it is."""
        self._open()
        kind = request.match_info["kind"]
        _token, visitor = self._visitor(request, kind, post=True)
        self._limit_public(request, kind)
        limit = ATTACHMENT_MAX_BYTES + UPLOAD_SLACK
        if request.content_length is None:
            raise web.HTTPLengthRequired(text="say the size")
        if request.content_length > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit,
                                                actual_size=request.content_length)
        event_id = request.query.get("id", "")
        if not EVENT_ID.match(event_id):
            raise web.HTTPBadRequest(text="an upload needs an id")
        reader = await request.multipart()
        data, mime, name, caption = b"", "", None, None
        async for part in reader:
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "caption":
                caption = (await part.text())[:TEXT_MAX]
                continue
            if part.name != "file":
                continue
            mime = (part.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            name = Path(getattr(part, "filename", None) or "file").name[:120]
            chunks = bytearray()
            while chunk := await part.read_chunk(64 * 1024):
                chunks += chunk
                if len(chunks) > ATTACHMENT_MAX_BYTES:
                    raise web.HTTPRequestEntityTooLarge(max_size=ATTACHMENT_MAX_BYTES,
                                                        actual_size=len(chunks))
            data = bytes(chunks)
        what = media_kind(mime)
        if not data or what is None:
            raise web.HTTPUnsupportedMediaType(text="photos, voice, video or PDF only")
        target = Path(self.settings.media_dir) / "web" / f"{uuid.uuid4().hex}.bin"
        await asyncio.to_thread(_keep, target, data)
        attachment = Attachment(what, LOCAL_PREFIX + str(target), mime, len(data), name)
        return await self._store(Inbound(NAME, visitor, event_id, text=caption or None,
                                         attachments=(attachment,)))

    # ---- what the browser receives ----------------------------------------------------------

    async def _history(self, visitor: str, after: int) -> list[dict[str, Any]]:
        async with self.sessions() as session:
            rows = (await session.execute(
                select(WebMessage.id, WebMessage.payload)
                .where(WebMessage.visitor == visitor, WebMessage.id > after)
                .order_by(WebMessage.id.desc()).limit(HISTORY))).all()
        return [_message_json(row_id, payload) for row_id, payload in reversed(rows)]

    @staticmethod
    def _after(request: web.Request) -> int:
        try:
            return max(0, int(request.query.get("after", "0")))
        except ValueError:
            return 0

    async def api_messages(self, request: web.Request) -> web.Response:
        """The polling fallback: messages after ?after=ID, waiting up to 25 s for one."""
        kind = request.match_info["kind"]
        _token, visitor = self._visitor(request, kind, post=False)
        after = self._after(request)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._listeners[visitor].add(queue)
        try:
            found = await self._history(visitor, after)
            if not found and request.query.get("wait") == "1":
                try:
                    found = [await asyncio.wait_for(queue.get(), POLL_SECONDS)]
                except TimeoutError:
                    found = []
        finally:
            self._unlisten(visitor, queue)
        return web.json_response({"messages": found}, headers=HEADERS)

    def _unlisten(self, visitor: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        listeners = self._listeners.get(visitor)
        if listeners is not None:
            listeners.discard(queue)
            if not listeners:
                del self._listeners[visitor]

    async def api_socket(self, request: web.Request) -> web.WebSocketResponse:
        """Live messages: what came after ?after=ID first, then each as it is sent."""
        kind = request.match_info["kind"]
        _token, visitor = self._visitor(request, kind, post=False)
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            raise web.HTTPForbidden(text="another site's page")  # cross-site WebSocket
        socket = web.WebSocketResponse(heartbeat=30.0)
        await socket.prepare(request)
        self._sockets.add(socket)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._listeners[visitor].add(queue)
        reader = asyncio.ensure_future(socket.receive())
        try:
            last = self._after(request)
            for item in await self._history(visitor, last):
                await socket.send_json(item)
                last = item["id"]
            while not socket.closed:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter, reader},
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    item = getter.result()
                    if item["id"] > last:
                        await socket.send_json(item)
                        last = item["id"]
                else:
                    getter.cancel()
                if reader in done:
                    if reader.result().type in (WSMsgType.CLOSE, WSMsgType.CLOSED,
                                                WSMsgType.CLOSING, WSMsgType.ERROR):
                        break
                    reader = asyncio.ensure_future(socket.receive())
        finally:
            reader.cancel()
            self._unlisten(visitor, queue)
            self._sockets.discard(socket)
            await socket.close()
        return socket

    async def api_file(self, request: web.Request) -> web.StreamResponse:
        """A file the bot sent this visitor (404 for anyone else's: the same as none)."""
        kind = request.match_info["kind"]
        _token, visitor = self._visitor(request, kind, post=False)
        async with self.sessions() as session:
            row = await session.get(WebMessage, int(request.match_info["id"]))
            payload = row.payload if row is not None and row.visitor == visitor else None
        media = (payload or {}).get("media")
        if not media:
            raise web.HTTPNotFound()
        kind_, ref, _channel, path = media
        path = path or (ref[len(LOCAL_PREFIX):] if str(ref).startswith(LOCAL_PREFIX) else None)
        if not path:
            raise web.HTTPNotFound()
        try:
            data = await asyncio.to_thread(crypto.read_file, path)
        except OSError:
            raise web.HTTPNotFound() from None
        name = Path(path).name
        content_type = {"photo": "image/png" if name.endswith(".png") else "image/jpeg",
                        "voice": "audio/ogg", "video": "video/mp4"}.get(
            kind_, "application/octet-stream")
        if name.endswith(".xlsx"):
            content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        disposition = "inline" if kind_ == "photo" else "attachment"
        return web.Response(body=data, headers={
            **HEADERS, "Content-Type": content_type,
            "Content-Disposition": f'{disposition}; filename="{name}"'})


async def _to_chat(_request: web.Request) -> web.Response:
    raise web.HTTPFound("/chat/")


def _keep(target: Path, data: bytes) -> None:
    """Write an upload encrypted, whole or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(crypto.seal_bytes(data))
    partial.replace(target)


def _read_message(common: dict[str, str], body: dict[str, Any]) -> Inbound | None:
    """The Inbound a page's JSON describes, or None when it describes nothing usable."""
    if isinstance(body.get("choice"), str) and 0 < len(body["choice"]) <= 128:
        return Inbound(**common, choice=body["choice"])
    location = body.get("location")
    if isinstance(location, list) and len(location) == 2:
        try:
            lat, lon = float(location[0]), float(location[1])
        except (TypeError, ValueError):
            return None
        if -90 <= lat <= 90 and -180 <= lon <= 180:
            return Inbound(**common, location=(lat, lon))
        return None
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        return None
    text = text[:TEXT_MAX]
    stripped = text.strip()
    if stripped.startswith("/") and len(stripped) > 1:
        word, *args = stripped.split()
        return Inbound(**common, command=word[1:].lower(), args=tuple(args))
    return Inbound(**common, text=text)

