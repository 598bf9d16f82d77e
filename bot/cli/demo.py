"""`safeschool demo`: a sandbox district in a fresh SQLite file, the web chat alone, and one
page with every persona side by side (for training and demonstrations).

Nothing from the demo can reach a messenger: its settings are built here, not read from the
environment or .env (no token, no public address), its database and files live in a folder
of their own, and its keys are made for it and die with it."""

from __future__ import annotations

import argparse
import secrets
import tempfile
import webbrowser
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bot.app import App
from bot.channels.web import Demo, WebChannel, visitor_of
from bot.cli.common import CliError, say, tr
from bot.core.clock import ScaledClock
from bot.core.settings import Settings
from bot.services.directory import Row, import_rows
from storage import crypto, db
from storage.models import Account, Area, Person, Role, RoleAssignment, School

FAST = 60.0  # the fast clock: a minute a second

AREAS = [("TH", "Tỉnh Thanh Hóa", "", "tỉnh"), ("QH", "Huyện Quan Hóa", "TH", "huyện"),
         ("HX", "Xã Hồi Xuân", "QH", "xã"), ("PL", "Xã Phú Lệ", "QH", "xã")]
SCHOOLS = [("THCS-HX", "Trường THCS Hồi Xuân", "HX", "THCS", "Bản Khằm"),
           ("TH-PL", "Trường Tiểu học Phú Lệ", "PL", "tiểu học", "Bản Đỏ")]
OFFICERS = [("Lê Văn An", "0912345678", "HX", "primary"),
            ("Trần Văn Bảo", "0912000111", "HX", "backup"),
            ("Phạm Thị Bình", "0987654321", "QH", "chief"),
            ("Hà Văn Cường", "0913000222", "PL", "primary")]
LIAISONS = [("Nguyễn Thị Hoa", "0901234567", "THCS-HX"),
            ("Đỗ Minh Châu", "0908888999", "TH-PL")]
ADMIN = ("Vũ Thị Quản", "0977000333", "TH")
# Who the trainer sees, in this order: (slug, their phone, or None for the parent).
PERSONAS = [("teacher", "0901234567"), ("officer", "0912345678"), ("backup", "0912000111"),
            ("chief", "0987654321"), ("parent", None), ("admin", "0977000333")]


def _rows() -> list[Row]:
    rows = [Row("areas", "demo", n, dict(zip(("code", "name", "parent_code", "level"), a,
                                             strict=True))) for n, a in enumerate(AREAS)]
    rows += [Row("schools", "demo", n, dict(zip(("code", "name", "area_code", "level",
                                                  "address"), s, strict=True)))
             for n, s in enumerate(SCHOOLS)]
    rows += [Row("officers", "demo", n, dict(zip(("name", "phone", "area_code", "duty"), o,
                                                  strict=True))) for n, o in enumerate(OFFICERS)]
    rows += [Row("liaisons", "demo", n, dict(zip(("name", "phone", "school_code"), li,
                                                  strict=True))) for n, li in enumerate(LIAISONS)]
    return rows


def demo_settings(folder: Path, host: str, port: int) -> Settings:
    """The sandbox's settings, whatever the environment says."""
    return Settings(_env_file=None,  # type: ignore[call-arg]
                    database_url=f"sqlite+aiosqlite:///{folder / 'demo.db'}",
                    telegram_token=None, zalo_token=None, telegram_webhook_url=None,
                    zalo_webhook_url=None, public_url=None, web_chat=True,
                    http_host=host, http_port=port, media_dir=folder / "media",
                    data_keys=crypto.generate_key(), relay_key=crypto.generate_key(),
                    case_tick_seconds=1.0, quiet_hours="00:00-00:00")


async def seed(app: App) -> dict[str, str]:
    """Create the demo district and a web-chat account for each persona; return their
    browser tokens by persona."""
    now = app.clock.now()
    tokens: dict[str, str] = {}
    async with app.sessions() as session, session.begin():
        await import_rows(session, _rows(), now)
        province = (await session.execute(select(Area).where(Area.code == ADMIN[2]))) \
            .scalar_one()
        admin = Person(name=ADMIN[0], phone="+84" + ADMIN[1][1:], created_at=now)
        school = (await session.execute(select(School).where(School.code == SCHOOLS[0][0]))) \
            .scalar_one()
        school.public_reports = True  # the trainer shows the public page too
        parent = Person(created_at=now)
        session.add_all([admin, parent])
        await session.flush()
        session.add_all([
            RoleAssignment(person_id=admin.id, role=Role.ADMIN, area_id=province.id,
                           created_at=now),
            RoleAssignment(person_id=parent.id, role=Role.PARENT, school_id=school.id,
                           created_at=now)])
        for slug, phone in PERSONAS:
            person = parent if phone is None else (await session.execute(
                select(Person).where(Person.phone == "+84" + phone[1:]))).scalar_one()
            tokens[slug] = secrets.token_urlsafe(32)
            session.add(Account(channel="web", external_id=visitor_of("chat", tokens[slug]),
                                person_id=person.id, created_at=now, last_seen_at=now,
                                code_failures=0))
    return tokens


async def cmd_demo(args: argparse.Namespace) -> int:
    """Run the sandbox until interrupted."""
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="safeschool-demo-"))
    if (folder / "demo.db").exists():
        raise CliError(say("demo.not_fresh", folder=folder))
    folder.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(folder, args.host, args.port)
    clock = ScaledClock()
    app = App(settings, clock)
    await db.upgrade(app.engine)
    tokens = await seed(app)
    t = tr()
    web = app.channels["web"]
    assert isinstance(web, WebChannel)
    web.demo = Demo(
        personas=tokens,
        labels={slug: t(f"demo.persona.{slug}") for slug, _ in PERSONAS},
        fast=lambda on: clock.set_factor(FAST if on else 1.0),
        is_fast=lambda: clock.factor > 1.0)

    def started() -> None:
        url = f"{settings.console_base}/chat/demo"
        print(say("demo.ready", url=url, folder=folder), flush=True)
        if not args.no_browser:
            webbrowser.open(url)

    await app.run_forever(started)
    return 0


def register(sub: Any) -> None:
    """Add demo."""
    demo = sub.add_parser("demo", help="a sandbox district with personas side by side in the "
                          "web chat (nothing reaches a messenger)")
    demo.add_argument("--port", type=int, default=8090, help="HTTP port (default 8090)")
    demo.add_argument("--host", default="127.0.0.1",
                      help="address to listen on (default 127.0.0.1: this computer only)")
    demo.add_argument("--dir", help="keep the demo's database here (default: a new "
                      "temporary folder)")
    demo.add_argument("--no-browser", action="store_true", help="do not open a browser")
    demo.set_defaults(func=cmd_demo)
