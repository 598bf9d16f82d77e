"""The main menu and how a role is described: shared by the handlers that end a flow."""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.choices import ChoiceData, choice_data
from bot.core.context import Context
from bot.core.messages import Choice
from storage.models import Duty, Role, RoleAssignment


@choice_data("menu")
@dataclass(frozen=True)
class MenuChoice(ChoiceData):
    """An item of the main menu: report, mycases, cases, stats, help, me, language."""

    item: str


def main_menu(ctx: Context) -> list[Choice]:
    """Return the main menu for this person's roles."""
    t = ctx.t
    items = []
    if ctx.has_role(Role.LIAISON, Role.PARENT, Role.PUBLIC):
        items += [MenuChoice("report").choice(t("menu.report")),
                  MenuChoice("mycases").choice(t("menu.mycases"))]
    if ctx.has_role(Role.OFFICER, Role.ADMIN):
        items.append(MenuChoice("cases").choice(t("menu.cases")))
    if any(r.role == Role.ADMIN or r.duty == Duty.CHIEF for r in ctx.roles):
        items.append(MenuChoice("stats").choice(t("menu.stats")))
    if ctx.has_role(Role.OFFICER, Role.ADMIN):
        items.append(MenuChoice("web").choice(t("menu.web")))
    items += [MenuChoice(item).choice(t(f"menu.{item}")) for item in ("help", "me", "language")]
    return items


def describe_role(ctx: Context, assignment: RoleAssignment) -> str:
    """Describe one role assignment in the reader's language, e.g. 'officer (primary) — X'."""
    t = ctx.t
    scope = assignment.school or assignment.area
    scope_name = scope.name if scope else "—"
    label = t(f"role.{assignment.role}")
    if assignment.role == Role.OFFICER and assignment.duty in set(Duty):
        label = t("role.officer_with_duty", duty=t(f"duty.{assignment.duty}"))
    return t("me.role_line", role=label, scope=scope_name)
