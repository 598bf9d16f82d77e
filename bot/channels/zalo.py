"""Zalo Bot API adapter: long polling or webhook in, sendMessage/sendPhoto out (aiohttp)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from bot.channels.base import (
    BadPayload,
    may_poll,
    supervised,
    unless_stopping,
    webhook_handler,
)
from bot.channels.pacing import Paced, Pacer
from bot.core.channel import (
    Accept,
    FatalChannelError,
    PermanentError,
    Profile,
    RateLimited,
    TransientError,
    Unreachable,
    departing,
    register_profile,
)
from bot.core.i18n import Translator
from bot.core.messages import Attachment, Inbound, Outbound
from bot.core.settings import Settings

_LOGGER = logging.getLogger(__name__)
NAME = "zalo"
SECRET_HEADER = "X-Bot-Api-Secret-Token"
MAX_BACKOFF = 5.0  # seconds between polls while Zalo or the database is away
PROBE_TIMEOUT = 3.0
UNREADABLE = 502  # a 200 answer we cannot read: transient, retried




def numbered_menu(message: Outbound) -> Outbound:
    """Zalo bots have no buttons: choices become a numbered list with a hint, and the person
    answers with the number (the dispatcher maps it back to the choice)."""
    if not message.choices:
        return message
    t = Translator(message.language or "vi", NAME)
    lines = [f"{n}. {c.label}" for n, c in enumerate(message.choices, start=1)]
    count = len(message.choices)
    if count == 1:
        hint = t("choices.hint_one")
    elif count <= 4:
        numbers = [str(n) for n in range(1, count + 1)]
        hint = t("choices.hint", numbers=f"{', '.join(numbers[:-1])} {t('choices.or')} "
                                          f"{numbers[-1]}")
    else:
        hint = t("choices.hint_range", last=count)
    menu = "\n".join(lines) + "\n" + hint
    return Outbound(f"{message.text}\n\n{menu}", message.choices, message.media,
                    message.language)


# Texts up to 2000 characters; captions are kept to Telegram's 1024 so a relayed photo reads
# the same on both.
PROFILE = Profile(NAME, text_limit=2000, caption_limit=1024, fit=numbered_menu)
register_profile(PROFILE)


class ZaloApiError(Exception):
    """A Zalo Bot API call failed; error_code follows HTTP codes (400, 401, 408, 429 …)."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_code(value: Any) -> int | None:
    """Zalo's error_code as a number, if it sent a usable one."""
    try:
        code = int(value)
    except (TypeError, ValueError):
        return None
    return code if code > 0 else None


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _first(*values: Any) -> Any:
    return next((v for v in values if v not in (None, "")), None)


def _event_id(payload: dict[str, Any]) -> str | None:
    """The message id of a raw event, if one can be found without trusting its shape.

    An event without a message object (Zalo sends `message.unsupported.received` so) has no
    id of its own: a digest of the event stands in, the same for a redelivery of it."""
    event = payload.get("result") if isinstance(payload.get("result"), dict) else payload
    message = event.get("message") if isinstance(event, dict) else None
    value = message.get("message_id") if isinstance(message, dict) else None
    if isinstance(value, str | int) and value != "":
        return str(value)[:128]
    if isinstance(event, dict) and not isinstance(message, dict):
        canonical = json.dumps(event, sort_keys=True, ensure_ascii=False, default=str)
        return "digest-" + hashlib.sha256(canonical.encode()).hexdigest()[:32]
    return None


def to_inbound(payload: dict[str, Any]) -> Inbound | None:
    """Normalise one Zalo event (wrapped in {ok, result} or not); None for what is ignored."""
    event = payload.get("result", payload) if isinstance(payload.get("result"), dict) else payload
    message = event.get("message") if isinstance(event.get("message"), dict) else {}
    name = event.get("event_name") or ""
    # Without a message object, the sender may still be given beside the event name.
    sender = _mapping(message.get("from") or event.get("from") or event.get("sender"))
    chat = _mapping(message.get("chat") or event.get("chat"))
    chat_id = _first(chat.get("id"), sender.get("id"), event.get("user_id"))
    message_id = message.get("message_id") or _event_id(event)
    if not chat_id or not message_id:
        return None
    if chat.get("chat_type", "PRIVATE").upper() != "PRIVATE" or sender.get("is_bot"):
        return None
    common = {"channel": NAME, "external_id": str(chat_id), "event_id": str(message_id),
              "display_name": sender.get("display_name")}
    text = message.get("text") or message.get("caption")
    if name == "message.text.received" and text:
        stripped = text.strip()
        if stripped.startswith("/") and len(stripped) > 1:
            word, *args = stripped.split()
            return Inbound(**common, command=word[1:].split("@", 1)[0].lower(),
                           args=tuple(args))
        return Inbound(**common, text=text)
    if name == "message.image.received":
        url = _first(message.get("photo"), message.get("photo_url"), message.get("url"))
        if url:
            return Inbound(**common, text=text, attachments=(
                Attachment("photo", str(url), "image/jpeg"),))
    if name == "message.voice.received":
        url = _first(message.get("voice"), message.get("voice_url"), message.get("url"))
        if url:
            return Inbound(**common, attachments=(Attachment("voice", str(url), "audio/aac"),))
    if name == "message.sticker.received":
        return Inbound(**common, unsupported="sticker")
    if name == "message.unsupported.received":
        return Inbound(**common, unsupported="withheld")
    return Inbound(**common, unsupported="other")


class ZaloChannel(Paced):
    """One Zalo bot: receives by long polling or webhook, sends through the Bot API."""

    name = NAME

    def __init__(self, settings: Settings, accept: Accept) -> None:
        assert settings.zalo_token is not None
        self.settings = settings
        self.accept = accept
        self.webhook = bool(settings.zalo_webhook_url)
        self._base = f"{settings.zalo_api_url.rstrip('/')}{settings.zalo_token.get_secret_value()}"
        self._http: aiohttp.ClientSession | None = None
        self._stopping = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self.restarts = 0  # times the intake died unexpectedly and was started again
        # Several instances on one database: only the leader polls (the app sets this).
        self.may_receive: Callable[[], Awaitable[None]] | None = None
        self.pacer = Pacer(settings.zalo_rate_per_second, chat_burst=settings.zalo_chat_burst,
                           margin=settings.pace_margin_seconds)

    async def call(self, method: str, wait_seconds: float | None = None,
                   **params: Any) -> Any:
        """Call a Bot API method with JSON params; return result or raise ZaloApiError."""
        assert self._http is not None
        wait = aiohttp.ClientTimeout(total=wait_seconds or self.settings.zalo_request_timeout)
        await departing()  # a paced send takes the bot's budget as its request leaves
        try:
            async with self._http.post(f"{self._base}/{method}", json=params,
                                       timeout=wait) as resp:
                status = resp.status
                raw = await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise ZaloApiError(408 if isinstance(exc, TimeoutError) else 503,
                               f"{type(exc).__name__}") from exc
        body = _json(raw)
        if status == 200 and body.get("ok") is True:
            return body.get("result")
        code = _error_code(body.get("error_code"))
        if code is None:
            # A 200 whose body is not JSON, or {ok: false} without a code, is the edge in
            # trouble, not a verdict on the message: retry it (502), never drop it as a 400.
            code = status if status != 200 else UNREADABLE
        raise ZaloApiError(code, str(body.get("description") or f"HTTP {status}"))

    async def start(self) -> None:
        """Check the token, then start polling or register the webhook.

        Raises FatalChannelError for what an operator must fix (a rejected token, a webhook
        URL Zalo refuses) and TransientError while Zalo cannot be reached (the app retries).
        """
        if self._http is None:
            self._http = aiohttp.ClientSession()
        self._stopping.clear()
        try:
            me = await self.call("getMe")
        except ZaloApiError as exc:
            if exc.code == 401:
                raise FatalChannelError("Zalo rejected SAFESCHOOL_ZALO_TOKEN") from exc
            raise TransientError(f"cannot reach the Zalo Bot API at "
                                 f"{self.settings.zalo_api_url} ({exc.code})") from exc
        _LOGGER.info("Zalo bot %s connected", (me or {}).get("account_name") or "?")
        try:
            if self.webhook:
                secret = self.settings.zalo_webhook_secret
                await self.call("setWebhook", url=self.settings.zalo_webhook_url,
                                secret_token=secret.get_secret_value() if secret else None)
                _LOGGER.info("Zalo webhook set; receiving on %s",
                             self.settings.zalo_webhook_path)
                return
            await self._drop_webhook()
        except ZaloApiError as exc:
            if exc.code in (400, 401, 403):
                raise FatalChannelError(f"Zalo refused the webhook setting "
                                        f"SAFESCHOOL_ZALO_WEBHOOK_URL: {exc.description} "
                                        "(it must be a public https:// URL)") from exc
            raise TransientError(f"Zalo's webhook API did not answer ({exc.code})") from exc
        self._poller = asyncio.create_task(
            supervised(NAME, self._poll, self._stopping, on_restart=self._restarted),
            name="zalo-polling")
        _LOGGER.info("Zalo long polling started")

    async def _drop_webhook(self) -> None:
        """A leftover webhook silently starves polling: remove it first."""
        try:
            info = await self.call("getWebhookInfo")
        except ZaloApiError as exc:
            if exc.code == 404:
                return
            raise
        if info and info.get("url"):
            _LOGGER.warning("Removing a leftover Zalo webhook before polling")
            await self.call("deleteWebhook")

    def _restarted(self) -> None:
        self.restarts += 1

    async def _poll(self) -> None:
        """Long-poll; each event is stored before the next poll (Zalo has no acknowledgement,
        so an event fetched but not stored would be gone). A stop waits for the store."""
        delay = 0.25
        timeout = self.settings.zalo_poll_timeout
        stopping = asyncio.ensure_future(self._stopping.wait())
        pending: dict[str, Any] | None = None  # fetched, not yet stored
        try:
            while not self._stopping.is_set() or pending is not None:
                if pending is None and not await may_poll(self.may_receive, stopping):
                    return
                if pending is None:
                    fetch = await unless_stopping(self.call(
                        "getUpdates", wait_seconds=timeout + 10, timeout=max(1, int(timeout))),
                        stopping)
                    if fetch is None:
                        return
                    try:
                        update = fetch.result()
                    except ZaloApiError as exc:
                        if exc.code == 408:
                            continue  # nothing new
                        if exc.code == 401:
                            _LOGGER.critical("Zalo rejected the token while polling; "
                                             "polling stopped")
                            return
                        wait = self.settings.zalo_rate_limited_pause if exc.code == 429 \
                            else delay
                        _LOGGER.warning("Zalo polling failed (%s); retrying in %.1fs",
                                        exc.code, wait)
                        await self._pause(wait)
                        delay = min(delay * 2, MAX_BACKOFF)
                        continue
                    if not isinstance(update, dict):
                        continue
                    pending = update
                try:
                    await self._store(pending)
                except Exception as exc:
                    # Kept in memory and stored again: Zalo will not send it a second time.
                    _LOGGER.warning("A Zalo event is not stored yet (%s); retrying in %.1fs",
                                    type(exc).__name__, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, MAX_BACKOFF)
                    continue
                pending = None
                delay = 0.25
        finally:
            stopping.cancel()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _store(self, payload: dict[str, Any]) -> None:
        """Store one event (or, if unreadable, its id) through the inbox."""
        try:
            inbound = to_inbound(payload)
        except Exception as exc:
            _LOGGER.warning("A Zalo event could not be read (%s); skipped", type(exc).__name__)
            event_id = _event_id(payload)
            if event_id:
                await self.accept([], [(NAME, event_id)])
            return
        if inbound is not None:
            await self.accept([inbound], [])

    async def _store_webhook_event(self, payload: Any) -> None:
        if not isinstance(payload, dict):
            raise BadPayload("not an event")
        await self._store(payload)

    def routes(self) -> list[web.RouteDef]:
        """Return the HTTP routes this channel serves."""
        if not self.webhook:
            return []
        handler = webhook_handler(name=NAME, header=SECRET_HEADER,
                                  secret=self.settings.zalo_webhook_secret,
                                  store=self._store_webhook_event,
                                  ok=lambda: web.json_response({"ok": True}))
        return [web.post(self.settings.zalo_webhook_path, handler)]

    async def stop_receiving(self) -> None:
        """Stop polling; an event already fetched is stored first, never cut off."""
        self._stopping.set()
        if self._poller is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._poller), 30)
            except TimeoutError:
                _LOGGER.error("A fetched Zalo event could not be stored before stopping")
                self._poller.cancel()
            with contextlib.suppress(BaseException):
                await self._poller
            self._poller = None

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def probe(self) -> None:
        """getMe with a short timeout: is the Bot API answering again?"""
        try:
            await self.call("getMe", wait_seconds=PROBE_TIMEOUT)
        except ZaloApiError as exc:
            if exc.code == 401:
                raise FatalChannelError("Zalo rejected the token") from exc
            if exc.code == 429:
                raise RateLimited(self.settings.zalo_rate_limited_pause, str(exc)) from exc
            raise TransientError(f"probe: {exc.code}") from exc

    async def send(self, chat_id: str, message: Outbound) -> str:
        """Send text (already split to 2000 characters) or a photo by public URL."""
        try:
            media = message.media
            if media is not None and media.kind == "photo":
                params: dict[str, Any] = {"chat_id": chat_id, "photo": media.ref}
                if message.text:
                    params["caption"] = message.text
                result = await self.call("sendPhoto", **params)
            else:
                text = message.text
                if media is not None:
                    text = f"{text}\n{media.ref}".strip()
                result = await self.call("sendMessage", chat_id=chat_id, text=text)
        except ZaloApiError as exc:
            if exc.code == 401:
                raise FatalChannelError("Zalo rejected the token") from exc
            if exc.code == 429:
                raise RateLimited(self.settings.zalo_rate_limited_pause, str(exc)) from exc
            if exc.code == 403:
                raise Unreachable(str(exc)) from exc
            if exc.code in (400, 404):
                raise PermanentError(str(exc)) from exc
            raise TransientError(str(exc)) from exc
        return str((result or {}).get("message_id") or "")
