"""Settings read from SAFESCHOOL_* environment variables or a .env file."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.db import DEFAULT_DATABASE_URL, normalise_url

LANGUAGES = ("vi", "en")


class Settings(BaseSettings):
    """Everything an operator can configure."""

    model_config = SettingsConfigDict(
        env_prefix="SAFESCHOOL_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = DEFAULT_DATABASE_URL
    telegram_token: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org/bot"
    telegram_file_url: str | None = None
    telegram_bot_username: str | None = None
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: SecretStr | None = None
    telegram_poll_timeout: float = 30.0
    telegram_request_timeout: float = 10.0
    zalo_token: SecretStr | None = None
    zalo_api_url: str = "https://bot-api.zaloplatforms.com/bot"
    zalo_webhook_url: str | None = None
    zalo_webhook_secret: SecretStr | None = None
    zalo_poll_timeout: float = 30.0
    zalo_request_timeout: float = 15.0
    zalo_rate_per_second: float = 10.0
    zalo_chat_burst: int = 1
    zalo_rate_limited_pause: float = 30.0
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    timezone: str = "Asia/Ho_Chi_Minh"
    default_language: str = "vi"
    # Delivery worker.
    outbox_concurrency: int = 8
    telegram_rate_per_second: float = 30.0
    telegram_chat_burst: int = 1  # messages one chat may get in as many seconds
    telegram_group_per_minute: float = 20.0
    outbox_max_attempts: int = 100
    outbox_give_up_hours: float = 24.0
    # Added to every pacing window: the messenger stamps arrivals on its own clock, after
    # its own delays; 30 ms covers that and still allows 97% of the limit.
    pace_margin_seconds: float = 0.03
    outbox_lease_seconds: float = 30.0  # renewed while held; a killed process's rows return
    # Registration.
    code_failures_allowed: int = 5
    code_lockout_minutes: int = 15
    invite_default_expiry_days: int = 7
    media_dir: Path = Path("media")
    # Encryption at rest (storage/crypto.py): keys separated by commas or spaces; the first
    # encrypts, every one decrypts. `safeschool keys generate` makes one.
    data_keys: SecretStr | None = None
    # The separate key that alone links an anonymous report to its reporter (the relay).
    relay_key: SecretStr | None = None
    # Retention (bot/services/retention.py; Decree 13/2023/NĐ-CP): how long data is kept.
    retention_outbox_days: float = 7  # a sent message's text
    retention_inbox_days: float = 7  # a handled inbound update
    retention_draft_hours: float = 24  # an unfinished report or form
    retention_closed_days: float = 730  # a closed case's texts, files and contacts
    case_tick_seconds: float = 15.0
    quiet_hours: str = "21:00-07:00"  # local time; awareness messages wait, alerts never do
    # Reports.
    report_limit_per_hour: int = 5
    # Statistics: periods cut on this day (Decree 09/2019: the 15th; 1 gives calendar
    # periods), the committee named on the workbook, how long a download link works.
    report_cutoff_day: int = 15
    committee_name: str = "Ban Chỉ đạo phòng, chống bạo lực học đường và xâm hại trẻ em"
    report_link_hours: float = 24.0
    # Where people reach this server from outside (links in messages: Zalo's report
    # picture and workbook). Unset: the origin of a webhook URL, if one is set.
    public_url: str | None = None
    # The web console: a /web sign-in link lasts this long; a session ends after this long
    # without a request, and in any case this long after sign-in.
    console_link_minutes: float = 10.0
    console_idle_minutes: float = 30.0
    console_max_hours: float = 12.0
    # /metrics and /readyz: with a token, only requests that carry it (Authorization: Bearer);
    # without one, only this machine (a proxy on it, or Prometheus beside it).
    metrics_token: SecretStr | None = None
    # Several instances on one PostgreSQL: a new leader (clock jobs, polling) within this long
    # after the leader dies.
    leader_timeout: float = 30.0
    # /readyz answers 503 when an alert has waited this long unsent.
    ready_alert_seconds: float = 60.0
    # The web chat (/chat): on unless turned off; with no messenger token it runs alone.
    web_chat: bool = True
    # A school's public report page (/chat/s/<code>) takes at most this many messages a
    # minute from one network address, and gives at most this many new browsers an hour an
    # identity there (each browser is also held to the report limit above). A school's
    # computer room reaches us from one address: a report is about ten messages.
    web_public_per_minute: int = 120
    web_public_new_per_hour: int = 60

    @field_validator("database_url")
    @classmethod
    def _usable_database_url(cls, value: str) -> str:
        normalise_url(value)  # a URL we cannot read or a driver we do not run on: one sentence
        return value

    @field_validator("default_language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError(f"must be one of {', '.join(LANGUAGES)}")
        return value

    @field_validator("report_cutoff_day")
    @classmethod
    def _cutoff_day(cls, value: int) -> int:
        if not 1 <= value <= 28:
            raise ValueError("must be a day from 1 to 28 (15 follows Decree 09/2019, 1 gives "
                             "calendar periods)")
        return value

    @field_validator("retention_outbox_days", "retention_inbox_days", "retention_draft_hours",
                     "retention_closed_days")
    @classmethod
    def _positive_retention(cls, value: float) -> float:
        if not value > 0:
            raise ValueError("must be more than 0 (how long data is kept)")
        return value

    @field_validator("retention_inbox_days")
    @classmethod
    def _inbox_outlives_redelivery(cls, value: float) -> float:
        # A handled update's inbox row is what tells a redelivery of it from a new update:
        # Telegram keeps an unconfirmed update for 24 hours.
        if value < 1:
            raise ValueError("must be at least 1 (a messenger may deliver an update again "
                             "within a day; its stored row keeps it from being handled twice)")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an address like https://safeschool.example.vn")
        return value.rstrip("/")

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str) -> str:
        if not re.match(r"^\s*\d{1,2}:\d{2}\s*-\s*\d{1,2}:\d{2}\s*$", value):
            raise ValueError("write it as 21:00-07:00")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value

    @field_validator("telegram_token", "telegram_webhook_secret", "zalo_token",
                     "zalo_webhook_secret", "metrics_token", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def tz(self) -> ZoneInfo:
        """Return the configured timezone."""
        return ZoneInfo(self.timezone)

    @property
    def public_base(self) -> str | None:
        """The address people reach this server at, for links: SAFESCHOOL_PUBLIC_URL, else
        the origin of a webhook URL (the messengers reach us there already)."""
        if self.public_url:
            return self.public_url
        for url in (self.zalo_webhook_url, self.telegram_webhook_url):
            if url:
                parts = urlsplit(url)
                return f"{parts.scheme}://{parts.netloc}"
        return None

    @property
    def console_base(self) -> str:
        """Where the web console's links point: the public address, else this server's own
        HTTP address (enough on the machine itself, or on a district office's network)."""
        if self.public_base:
            return self.public_base.rstrip("/")
        host = "127.0.0.1" if self.http_host in ("0.0.0.0", "::", "") else self.http_host
        return f"http://{host}:{self.http_port}"

    @property
    def telegram_webhook_path(self) -> str:
        """Return the path the Telegram webhook is served on."""
        return _path(self.telegram_webhook_url, "/telegram/webhook")

    @property
    def zalo_webhook_path(self) -> str:
        """Return the path the Zalo webhook is served on."""
        return _path(self.zalo_webhook_url, "/zalo/webhook")


def _path(url: str | None, default: str) -> str:
    return (urlsplit(url).path if url else "") or default


def safe_url(url: str) -> str:
    """Return a database URL with any password masked, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url
