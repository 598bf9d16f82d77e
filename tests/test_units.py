"""Small pieces with sharp edges: catalogues, splitting, typed choices, log redaction."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from bot.core.context import match_choice
from bot.core.i18n import Translator, catalogues
from bot.core.logs import RedactSecrets
from bot.core.messages import split_text
from bot.services.codes import ALPHABET, normalise_code, random_code
from bot.services.invitations import parse_duration


def test_catalogues_have_the_same_keys_and_placeholders() -> None:
    loaded = catalogues()  # raises CatalogueError on any mismatch
    assert set(loaded["vi"]) == set(loaded["en"])
    assert Translator("vi")("language.set") == "Đã chuyển sang tiếng Việt."
    assert Translator("xx").language == "vi"  # unknown languages fall back to Vietnamese



def test_vietnamese_messages_do_not_call_the_reader_ban() -> None:
    """Officers are «đồng chí», parents «anh/chị», everyone else is addressed neutrally;
    «bạn» (the casual "you") reads wrong from a government programme. «một bạn» (a pupil)
    stays: it is about a child, not to the reader."""
    casual = re.compile(r"(^|[.!?:]\s+|\n)Bạn\b|\b(của|cho|với|nếu|khi) bạn\b", re.IGNORECASE)
    found = [key for key, text in catalogues()["vi"].items() if casual.search(text)]
    assert found == []


def test_every_message_key_used_in_code_exists() -> None:
    root = Path(__file__).resolve().parents[1]
    used = set()
    for path in [*root.glob("handlers/*.py"), *root.glob("bot/**/*.py"),
                 *root.glob("schedules/*.py")]:
        text = path.read_text()
        used |= set(re.findall(r'(?:reply|t|tr\(\))\(\s*"([a-z_]+\.[a-z_.]+)"', text))
        used |= {f"cli.{key}" for key in re.findall(r'\bsay\(\s*"([a-z_][a-z_.]*)"', text)}
    assert used, "the scan found no keys"
    assert used <= set(catalogues()["vi"])


def test_split_text_respects_limit_and_word_boundaries() -> None:
    text = "Trẻ em cần được bảo vệ. " * 300
    parts = split_text(text, 2000)
    assert all(len(p) <= 2000 for p in parts)
    assert " ".join(parts) == text.strip()
    assert split_text("ngắn", 2000) == ["ngắn"]
    assert split_text("x" * 4500, 2000) == ["x" * 2000, "x" * 2000, "x" * 500]


def test_typed_number_or_label_selects_a_choice() -> None:
    offered = [["lang:vi", "Tiếng Việt"], ["lang:en", "English"]]
    assert match_choice("2", offered) == "lang:en"
    assert match_choice(" 1. ", offered) == "lang:vi"
    assert match_choice("tiếng việt", offered) == "lang:vi"
    assert match_choice("3", offered) is None
    assert match_choice("xin chào", offered) is None


def test_codes_are_random_unambiguous_and_forgiving_to_type() -> None:
    codes = {random_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(set(c) <= set(ALPHABET) and len(c) == 10 for c in codes)
    assert not set("01IOL") & set(ALPHABET)
    assert normalise_code(" ab2c-d3ef gh ") == "AB2CD3EFGH"
    assert parse_duration("7d").days == 7
    with pytest.raises(ValueError):
        parse_duration("0d")


def test_log_records_never_carry_the_token(caplog: pytest.LogCaptureFixture) -> None:
    token = "123456:AAH-very-secret-token"
    logger = logging.getLogger("test.redact")
    logger.addFilter(RedactSecrets([token]))
    with caplog.at_level(logging.INFO, logger="test.redact"):
        logger.info("POST https://api.telegram.org/bot%s/getMe", token)
    assert token not in caplog.text and "bot***/getMe" in caplog.text


async def test_database_errors_never_carry_parameters_into_logs(tmp_path) -> None:
    from sqlalchemy import text

    from storage import db

    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (v TEXT UNIQUE)"))
            await conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": "Em Nguyễn Văn A bị đánh"})
            with pytest.raises(Exception) as info:
                await conn.execute(text("INSERT INTO t VALUES (:v)"),
                                   {"v": "Em Nguyễn Văn A bị đánh"})
        assert "Nguyễn Văn A" not in str(info.value)
    finally:
        await engine.dispose()


def test_only_errors_that_may_go_away_by_themselves_are_retried() -> None:
    import sqlite3

    from sqlalchemy.exc import IntegrityError, OperationalError

    from storage.db import is_transient

    locked = OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked"))
    assert is_transient(locked)
    assert is_transient(ConnectionRefusedError(111, "Connect call failed"))
    assert is_transient(OSError("Multiple exceptions: [Errno 111] Connect call failed"))
    assert not is_transient(FileNotFoundError(2, "No such file"))
    assert not is_transient(IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE")))
    assert not is_transient(OperationalError("SELECT", {}, sqlite3.OperationalError(
        "no such column: x")))
    assert not is_transient(ValueError("not a number"))


def test_choice_data_is_checked_where_it_is_built_and_read_back_safely() -> None:
    from dataclasses import dataclass

    from bot.core.choices import ChoiceData, ChoiceError, choice_data

    @choice_data("t")
    @dataclass(frozen=True)
    class Pick(ChoiceData):
        action: str
        n: int
        arg: str | None = None

    assert Pick("close", 12, "resolved").pack() == "t:close:12:resolved"
    assert Pick("view", 7).pack() == "t:view:7"  # a trailing empty field is left out
    assert Pick.unpack("t:close:12:resolved") == Pick("close", 12, "resolved")
    assert Pick.unpack("t:view:7") == Pick("view", 7)
    for stale in ("t:view", "t:view:x", "t:view:²", "t:view:-1", "t:a:1:b:c", "u:view:7",
                  "t::7", "t:view:1234567890123", None, ""):
        assert Pick.unpack(stale) is None, stale
    with pytest.raises(ChoiceError):
        Pick("a" * 61, 1).pack()  # 65 bytes: refused where it is built
    with pytest.raises(ChoiceError):
        Pick("a:b", 1).pack()  # a colon would read back as another field
    with pytest.raises(ChoiceError):
        Pick("", 1).pack()
    assert len(Pick("a" * 60, 1).pack().encode()) == 64  # the limit itself is fine
    assert len(Pick("ă" * 30, 1).pack().encode()) == 64  # bytes, not characters, count
    with pytest.raises(ChoiceError):
        Pick("ă" * 31, 1).pack()


def test_split_text_counts_what_the_messengers_count_utf16_units() -> None:
    from bot.core.messages import utf16_units

    text = ("Cảnh báo 🚨 an toàn cho trẻ 👧👦. " * 120).strip()  # emoji are 2 units each
    parts = split_text(text, 2000)
    assert all(utf16_units(p) <= 2000 for p in parts)
    assert len(parts) == 3 and utf16_units(text) > 4000 >= len(text)
    assert all(p.endswith(".") for p in parts)  # cut after a sentence
    assert " ".join(parts) == text


def test_typed_answers_match_without_diacritics_case_punctuation_or_emoji() -> None:
    from bot.core.context import matching_choices

    offered = [["a", "✅ Tiếp nhận"], ["b", "Bắt nạt"], ["c", "Không"], ["d", "Khác"],
               ["e", "Đe dọa, uy hiếp"]]
    assert match_choice("tiep nhan", offered) == "a"
    assert match_choice("TIẾP NHẬN!", offered) == "a"
    assert match_choice("bat nat", offered) == "b"
    assert match_choice("khong", offered) == "c"
    assert match_choice("bắt", offered) == "b"  # an unambiguous start
    assert match_choice("de doa", offered) == "e"  # đ is typed as d
    assert match_choice("kh", offered) is None  # too short to be a start
    assert [k for k, _ in matching_choices("kha", offered)] == ["d"]
    assert [k for k, _ in matching_choices("Kh?", offered)] == []
    assert match_choice("😀", offered) is None
    both = [["x", "Khẩn cấp"], ["y", "Khẩn trương"]]
    assert [k for k, _ in matching_choices("khan", both)] == ["x", "y"]  # ask which


def test_split_text_does_not_cut_inside_a_quotation_when_it_can_avoid_it() -> None:
    quoted = "“" + "Em bị đánh ở cổng trường. Em sợ lắm. " * 8 + "”"
    text = "Cán bộ hỏi thêm. " * 10 + quoted + " Cảm ơn."
    parts = split_text(text, 400)
    assert all(p.count("“") == p.count("”") for p in parts)  # the quotation stays whole
