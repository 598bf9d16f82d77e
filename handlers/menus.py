"""The main menu and how a role is described: shared by the handlers that end a flow."""

from __future__ import annotations

from bot.core.context import Context
from bot.core.messages import Choice
from storage.models import Duty, Role, RoleAssignment


def main_menu(ctx: Context) -> list[Choice]:
    """Return the main menu for this person's roles."""
    t = ctx.t
    items = []
    if ctx.has_role(Role.LIAISON, Role.PARENT):
        items += [Choice("menu:report", t("menu.report")),
                  Choice("menu:mycases", t("menu.mycases"))]
    if ctx.has_role(Role.OFFICER):
        items.append(Choice("menu:cases", t("menu.cases")))
    items += [Choice("menu:help", t("menu.help")), Choice("menu:me", t("menu.me")),
              Choice("menu:language", t("menu.language"))]
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
