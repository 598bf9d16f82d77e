"""Encryption at rest of what can describe a case or a child.

Columns declared with `EncryptedText`, `EncryptedFloat` or `EncryptedJSON` hold a token
`v1.<key id>.<Fernet token>`; the code above storage only ever sees the plain value. The keys
come from `SAFESCHOOL_DATA_KEYS` (a list: the first encrypts, all decrypt), configured once per
process with `configure()`. The key id (eight hex digits of the key's SHA-256) says which key a
value is under, so `safeschool keys rotate` finds the rows still on an old key with an index-free
`NOT LIKE` scan and knows exactly when it is done.

A value that does not start with `v1.` is plain text written before encryption existed (the
migration that introduced these types encrypts every such row; the fallback only keeps a
half-migrated database readable). A token under a key that is not configured, or one that
does not verify, raises `DataKeyError`: never silent garbage.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator

PREFIX = "v1."


class DataKeyError(Exception):
    """Data keys missing, malformed or not the ones the data was encrypted with. `key` names
    the problem (the command line says it in the reader's language), str() in English."""

    def __init__(self, key: str, english: str, **values: object) -> None:
        super().__init__(english)
        self.key, self.values = key, values


def key_id(key: str) -> str:
    """A short, stable name for a key (never the key itself)."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def generate_key() -> str:
    """A new random key, as `SAFESCHOOL_DATA_KEYS` takes it."""
    return Fernet.generate_key().decode()


def parse_keys(text: str | None) -> list[str]:
    """The keys of a `SAFESCHOOL_DATA_KEYS` value (comma- or space-separated), checked."""
    keys = [k.strip() for k in (text or "").replace(",", " ").split() if k.strip()]
    for n, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError) as exc:
            raise DataKeyError("malformed", f"key {n} of SAFESCHOOL_DATA_KEYS is not a valid "
                               "key (make one with `safeschool keys generate`)", n=n) from exc
    return keys


class Keyring:
    """The configured keys: the first encrypts, any of them decrypts."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = list(keys)
        self._fernets = {key_id(k): Fernet(k) for k in self.keys}
        self.current = key_id(self.keys[0]) if self.keys else None

    def encrypt(self, plain: bytes) -> str:
        """A token under the first key."""
        if self.current is None:
            raise DataKeyError("missing", "SAFESCHOOL_DATA_KEYS is not set: case data cannot "
                               "be stored without a key (make one with `safeschool keys "
                               "generate`)")
        token = self._fernets[self.current].encrypt(plain).decode()
        return f"{PREFIX}{self.current}.{token}"

    def decrypt(self, stored: str) -> bytes:
        """The plain bytes of a token written by encrypt()."""
        if self.current is None:
            raise DataKeyError("missing", "SAFESCHOOL_DATA_KEYS is not set: case data cannot "
                               "be read without its key")
        kid, _, token = stored[len(PREFIX):].partition(".")
        fernet = self._fernets.get(kid)
        if fernet is None:
            raise DataKeyError("unknown", f"data was encrypted with key {kid}, which is not "
                               "in SAFESCHOOL_DATA_KEYS", kid=kid)
        try:
            return fernet.decrypt(token.encode())
        except InvalidToken as exc:
            raise DataKeyError("invalid", f"a value under key {kid} does not verify: the "
                               "key or the data is wrong", kid=kid) from exc

    def current_prefix(self) -> str:
        """How every value under the first key starts."""
        return f"{PREFIX}{self.current}."


_KEYRING = Keyring([])


def configure(keys: Iterable[str]) -> Keyring:
    """Use these keys in this process (the app and each command call it at start)."""
    global _KEYRING
    _KEYRING = Keyring(keys)
    return _KEYRING


def keyring() -> Keyring:
    """The keys this process uses."""
    return _KEYRING


def seal(plain: bytes) -> str:
    """Encrypt bytes under the current key."""
    return _KEYRING.encrypt(plain)


def unseal(stored: str) -> bytes:
    """Decrypt a sealed value."""
    return _KEYRING.decrypt(stored)


def seal_bytes(plain: bytes) -> bytes:
    """A file's contents, encrypted (the same token format, as bytes)."""
    return seal(plain).encode()


def read_file(path: str | Path) -> bytes:
    """A kept file's plain contents (files kept before encryption are read as they are)."""
    stored = Path(path).read_bytes()
    return unseal(stored.decode()) if stored.startswith(PREFIX.encode()) else stored


def is_sealed(stored: str | None) -> bool:
    """Whether a stored value is a token (not legacy plain text)."""
    return stored is not None and stored.startswith(PREFIX)


class _Encrypted(TypeDecorator[Any]):
    """Text in the database; the Python value is encoded by subclasses."""

    impl = Text
    cache_ok = True

    def encode(self, value: Any) -> bytes:
        """The Python value as the bytes to seal (each subclass says how)."""
        raise NotImplementedError

    def decode(self, plain: str) -> Any:
        """The Python value from its opened text (each subclass says how)."""
        raise NotImplementedError

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        return seal(self.encode(value))

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):  # a JSON column not yet converted (PostgreSQL)
            return value
        plain = unseal(value).decode() if is_sealed(value) else value
        return self.decode(plain)


class EncryptedText(_Encrypted):
    """A string, encrypted."""

    cache_ok = True

    def encode(self, value: Any) -> bytes:
        return str(value).encode()

    def decode(self, plain: str) -> str:
        return plain


class EncryptedFloat(_Encrypted):
    """A number (a coordinate), encrypted."""

    cache_ok = True

    def encode(self, value: Any) -> bytes:
        return repr(float(value)).encode()

    def decode(self, plain: str) -> float:
        return float(plain)


class EncryptedJSON(_Encrypted):
    """A JSON document (drafts, payloads, timeline data), encrypted."""

    cache_ok = True

    def encode(self, value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()

    def decode(self, plain: str) -> Any:
        return json.loads(plain)


class Relay:
    """The sealed link from an anonymous report to its reporter (`SAFESCHOOL_RELAY_KEY`).

    Only the relay code holds this key: the case keeps the reporter's person and account
    encrypted under it (`seal`), and a keyed hash of the person (`tag`) lets the reporter find
    their own cases. Without the key a database query, an export or the console sees neither:
    the data keys do not open it, and a hash of a small number cannot be reversed without the
    key it was made with."""

    def __init__(self, key: str | None) -> None:
        self.key = key
        self._fernet = Fernet(key) if key else None
        self._mac = hashlib.sha256(b"relay-tag:" + key.encode()).digest() if key else b""

    def _need(self) -> Fernet:
        if self._fernet is None:
            raise DataKeyError("relay_missing", "SAFESCHOOL_RELAY_KEY is not set: anonymous "
                               "reports cannot be linked to their reporter without it (make "
                               "one with `safeschool keys generate`)")
        return self._fernet

    def tag(self, *parts: object) -> str:
        """A keyed hash of parts (stable for one key; meaningless without it)."""
        self._need()
        text = "|".join(str(p) for p in parts).encode()
        return hmac.new(self._mac, text, hashlib.sha256).hexdigest()[:40]

    def seal(self, person_id: int | None, account_id: int | None) -> str:
        """The reporter's person and account, readable by the relay alone."""
        plain = json.dumps({"p": person_id, "a": account_id}).encode()
        return self._need().encrypt(plain).decode()

    def unseal(self, sealed: str) -> tuple[int | None, int | None]:
        """(person id, account id) of a seal; DataKeyError if it is not under this key."""
        try:
            found = json.loads(self._need().decrypt(sealed.encode()))
        except InvalidToken as exc:
            raise DataKeyError("relay_invalid", "an anonymous reporter's link does not open "
                               "with SAFESCHOOL_RELAY_KEY: the key is wrong") from exc
        return found.get("p"), found.get("a")


def parse_relay_key(text: str | None) -> str | None:
    """The `SAFESCHOOL_RELAY_KEY` value, checked."""
    key = (text or "").strip() or None
    if key is not None:
        try:
            Fernet(key)
        except (ValueError, TypeError) as exc:
            raise DataKeyError("relay_malformed", "SAFESCHOOL_RELAY_KEY is not a valid key "
                               "(make one with `safeschool keys generate`)") from exc
    return key


_RELAY = Relay(None)


def configure_relay(key: str | None) -> Relay:
    """Use this relay key in this process."""
    global _RELAY
    _RELAY = Relay(key)
    return _RELAY


def relay() -> Relay:
    """The relay key this process uses."""
    return _RELAY


# The primary key of each table with encrypted columns (rotation walks rows by it).
KEY_COLUMN = {"conversations": "account_id"}

# Every encrypted column: (table, column, type). Rotation and the migration walk this list.
ENCRYPTED: list[tuple[str, str, type[_Encrypted]]] = [
    ("incidents", "description", EncryptedText),
    ("incidents", "occurred", EncryptedText),
    ("incidents", "place", EncryptedText),
    ("incidents", "latitude", EncryptedFloat),
    ("incidents", "longitude", EncryptedFloat),
    ("incidents", "children", EncryptedText),
    ("incidents", "reporter_name", EncryptedText),
    ("incidents", "reporter_phone", EncryptedText),
    ("incident_events", "data", EncryptedJSON),
    ("conversations", "data", EncryptedJSON),
    ("inbox", "inbound", EncryptedJSON),
    ("outbox", "payload", EncryptedJSON),
]
