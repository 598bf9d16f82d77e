"""Telegram adapter on python-telegram-bot: updates in as Inbound, Outbound out as messages."""

from __future__ import annotations

import asyncio
import hmac
import logging
import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from aiohttp import web
from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageEntity,
    Update,
)
from telegram.constants import ChatType
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import Application, ApplicationBuilder, ContextTypes, TypeHandler

from bot.channels.base import (
    FatalChannelError,
    PermanentError,
    RateLimited,
    RateLimits,
    TransientError,
    Unreachable,
)
from bot.messages import Attachment, Inbound, Outbound
from bot.settings import Settings

_LOGGER = logging.getLogger(__name__)
NAME = "telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]
CALLBACK_DATA_MAX_BYTES = 64

InboundHandler = Callable[[Inbound], Awaitable[object]]


def _file_url(api_url: str) -> str:
    base = api_url.rstrip("/")
    return base[: -len("/bot")] + "/file/bot" if base.endswith("/bot") else base + "/file/bot"


def _attachments(message: Message) -> tuple[Attachment, ...]:
    found: list[Attachment] = []
    if message.photo:
        best = message.photo[-1]
        found.append(Attachment("photo", best.file_id, "image/jpeg", best.file_size))
    for kind in ("voice", "audio", "video", "video_note", "document"):
        media = getattr(message, kind, None)
        if media is not None:
            found.append(Attachment(kind, media.file_id, getattr(media, "mime_type", None),
                                    media.file_size, getattr(media, "file_name", None)))
    return tuple(found)


def to_inbound(update: Update) -> Inbound | None:
    """Normalise a Telegram update; None for what the bot ignores (groups, channels)."""
    chat = update.effective_chat
    user = update.effective_user
    if chat is None or chat.type != ChatType.PRIVATE:
        return None
    common = {
        "channel": NAME,
        "external_id": str(chat.id),
        "event_id": str(update.update_id),
        "display_name": user.full_name if user else None,
    }
    if update.callback_query is not None:
        return Inbound(**common, choice=update.callback_query.data)
    if update.edited_message is not None:
        return Inbound(**common, unsupported="edited")
    message = update.message
    if message is None:
        return None
    text = message.text or message.caption
    command, args = None, ()
    entities = message.entities or ()
    if message.text and entities and entities[0].type == MessageEntity.BOT_COMMAND \
            and entities[0].offset == 0:
        word = message.text[: entities[0].length]
        command = word[1:].split("@", 1)[0].lower()
        args = tuple(message.text[entities[0].length:].split())
        text = None
    location = None
    if message.location is not None:
        location = (message.location.latitude, message.location.longitude)
    attachments = _attachments(message)
    unsupported = None
    if not text and command is None and not attachments and location is None:
        unsupported = "sticker" if message.sticker else "other"
    return Inbound(**common, text=text, command=command, args=args, attachments=attachments,
                   location=location, unsupported=unsupported)


def _read_kept(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def render_markup(message: Outbound) -> InlineKeyboardMarkup | None:
    """Render choices as numbered inline buttons, so typing the number works too."""
    if not message.choices:
        return None
    rows = []
    for n, choice in enumerate(message.choices, start=1):
        if len(choice.key.encode()) > CALLBACK_DATA_MAX_BYTES:
            raise PermanentError(f"choice key longer than {CALLBACK_DATA_MAX_BYTES} bytes")
        rows.append([InlineKeyboardButton(f"{n}. {choice.label}", callback_data=choice.key)])
    return InlineKeyboardMarkup(rows)


class TelegramChannel:
    """Receives updates (polling or webhook) and sends messages through one bot."""

    name = NAME

    def __init__(self, settings: Settings, on_inbound: InboundHandler,
                 on_accept: InboundHandler | None = None) -> None:
        assert settings.telegram_token is not None
        self.settings = settings
        self.on_inbound = on_inbound
        self.on_accept = on_accept or on_inbound  # webhook deliveries: stored, then handled
        self.webhook = bool(settings.telegram_webhook_url)
        builder = (
            ApplicationBuilder()
            .token(settings.telegram_token.get_secret_value())
            .base_url(settings.telegram_api_url)
            .base_file_url(settings.telegram_file_url or _file_url(settings.telegram_api_url))
            .concurrent_updates(64)
            .connection_pool_size(max(8, settings.outbox_concurrency * 2))
            .connect_timeout(settings.telegram_request_timeout)
            .read_timeout(settings.telegram_request_timeout)
            .write_timeout(settings.telegram_request_timeout)
        )
        if self.webhook:
            builder = builder.updater(None)
        self.application: Application = builder.build()
        self.application.add_handler(TypeHandler(Update, self._on_update))
        self.limits = RateLimits(settings.telegram_rate_per_second, settings.telegram_chat_burst,
                                 settings.telegram_group_per_minute)

    @property
    def username(self) -> str | None:
        """Return the bot's username once started."""
        return self.application.bot.username if self.application.bot._bot_user else None

    async def start(self) -> None:
        """Log in (getMe), then start receiving updates by webhook or long polling."""
        try:
            await self.application.initialize()
        except InvalidToken as exc:
            raise FatalChannelError("Telegram rejected SAFESCHOOL_TELEGRAM_TOKEN") from exc
        except NetworkError as exc:
            raise FatalChannelError(f"cannot reach the Telegram Bot API at "
                                    f"{self.settings.telegram_api_url} ({exc.message})") from exc
        await self.application.start()
        if self.webhook:
            secret = self.settings.telegram_webhook_secret
            await self.application.bot.set_webhook(
                url=self.settings.telegram_webhook_url or "",
                secret_token=secret.get_secret_value() if secret else None,
                allowed_updates=ALLOWED_UPDATES,
            )
            _LOGGER.info("Telegram webhook set; receiving on %s",
                         self.settings.telegram_webhook_path)
        else:
            assert self.application.updater is not None
            await self.application.updater.start_polling(
                timeout=timedelta(seconds=self.settings.telegram_poll_timeout),
                allowed_updates=ALLOWED_UPDATES,
            )
            _LOGGER.info("Telegram long polling started")

    async def stop_receiving(self) -> None:
        """Stop polling and finish the handlers already running."""
        updater = self.application.updater
        if updater is not None and updater.running:
            await updater.stop()
        if self.application.running:
            await self.application.stop()

    async def close(self) -> None:
        """Close the Bot API connections."""
        await self.application.shutdown()

    async def _on_update(self, update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
        """Hand one update to the core."""
        if update.callback_query is not None:
            await self._answer(update)
        inbound = to_inbound(update)
        if inbound is not None:
            await self.on_inbound(inbound)

    async def handle_webhook(self, request: web.Request) -> web.Response:
        """Accept an update from Telegram after checking the secret header, before the body."""
        secret = self.settings.telegram_webhook_secret
        given = request.headers.get(SECRET_HEADER, "")
        if secret is None or not hmac.compare_digest(given.encode(),
                                                     secret.get_secret_value().encode()):
            return web.Response(status=403, text="forbidden")
        try:
            data = await request.json()
            update = Update.de_json(data, self.application.bot)
        except Exception:
            return web.Response(status=400, text="bad update")
        if update.callback_query is not None:
            self.application.create_task(self._answer(update))
        inbound = to_inbound(update)
        if inbound is not None:
            try:
                await self.on_accept(inbound)  # stored before Telegram hears 200
            except Exception:
                _LOGGER.exception("Could not store a Telegram update; Telegram will resend it")
                return web.Response(status=500, text="try again")
        return web.Response(text="ok")

    async def _answer(self, update: Update) -> None:
        """Stop the button's spinner (best effort)."""
        try:
            await update.callback_query.answer()  # type: ignore[union-attr]
        except TelegramError:
            _LOGGER.debug("Could not answer a callback query", exc_info=True)

    def routes(self) -> list[web.RouteDef]:
        """Return the HTTP routes this channel serves."""
        if not self.webhook:
            return []
        return [web.post(self.settings.telegram_webhook_path, self.handle_webhook)]

    async def throttle(self, chat_id: str) -> None:
        """Respect ~30 messages/s per bot, ~1/s per chat and 20/min per group."""
        await self.limits.acquire(chat_id, group=chat_id.startswith("-"))

    async def _send_media(self, chat_id: int, message: Outbound,
                          markup: InlineKeyboardMarkup | None) -> Message:
        """Send a file by Telegram file id or public URL; anything else as a text link."""
        media = message.media
        assert media is not None
        bot = self.application.bot
        kept = await asyncio.to_thread(_read_kept, media.path) if media.path else None
        file: str | bytes = kept if kept is not None else media.ref  # our copy outlives a URL
        if kept is None and media.channel != NAME and not media.ref.startswith(("http://", "https://")):
            raise PermanentError(f"cannot send a {media.channel} file id through Telegram")
        caption = message.text or None
        foreign = media.channel != NAME
        if media.kind == "photo":
            return await bot.send_photo(chat_id, file, caption=caption, reply_markup=markup)
        if foreign:  # other messengers' voice (AAC) and video formats: safest as documents
            return await bot.send_document(chat_id, file, caption=caption, reply_markup=markup)
        if media.kind == "voice":
            return await bot.send_voice(chat_id, file, caption=caption, reply_markup=markup)
        if media.kind == "audio":
            return await bot.send_audio(chat_id, file, caption=caption, reply_markup=markup)
        if media.kind == "video":
            return await bot.send_video(chat_id, file, caption=caption, reply_markup=markup)
        if media.kind == "video_note":
            return await bot.send_video_note(chat_id, file, reply_markup=markup)
        return await bot.send_document(chat_id, file, caption=caption, reply_markup=markup)

    async def send(self, chat_id: str, message: Outbound) -> str:
        """Send one message; translate Telegram's errors for the worker."""
        markup = render_markup(message)
        try:
            if message.media is not None:
                sent = await self._send_media(int(chat_id), message, markup)
            else:
                sent = await self.application.bot.send_message(
                    chat_id=int(chat_id), text=message.text, reply_markup=markup)
        except RetryAfter as exc:
            with warnings.catch_warnings():  # PTB 22 warns that the type will change
                warnings.simplefilter("ignore")
                delay = exc.retry_after
            seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
            raise RateLimited(seconds) from exc
        except Forbidden as exc:
            raise Unreachable(f"forbidden: {exc.message}") from exc
        except InvalidToken as exc:
            raise FatalChannelError("Telegram rejected the token") from exc
        except ChatMigrated as exc:
            raise PermanentError("chat migrated to a supergroup") from exc
        except BadRequest as exc:
            if "chat not found" in exc.message.lower():
                raise Unreachable(f"bad request: {exc.message}") from exc
            raise PermanentError(f"bad request: {exc.message}") from exc
        except NetworkError as exc:
            raise TransientError(f"network: {exc.message}") from exc
        except TelegramError as exc:
            raise TransientError(f"telegram: {exc.message}") from exc
        return str(sent.message_id)
