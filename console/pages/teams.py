"""Teams: groups of users, with this month's spend against the team's budget; creating
one, adding and removing members, and deleting it."""

from __future__ import annotations

from aiohttp import web

from aibridge.v1 import admin_pb2
from console.api import Refused
from console.spending import budget_scopes, spending
from console.views import (
    call,
    change_of,
    find_named,
    form,
    refusal,
    render,
    see_other,
    session_of,
)

routes = web.RouteTableDef()


async def _listing(
    request: web.Request,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    listing = await call(request, "ListTeams", admin_pb2.ListTeamsRequest())
    spend = await spending(request, "team")
    teams = [
        (t, spend.of(t.id, budget_scopes("team", t.name)), spend.set_of(f"team:{t.name}"))
        for t in listing.teams
    ]
    context = {
        "teams": teams,
        "spending": spend,
        "revision": listing.revision,
        "errors": errors or {},
        "values": values or {},
    }
    return render(request, "teams.html", context, status)


@routes.get("/teams")
async def teams(request: web.Request) -> web.Response:
    return await _listing(request)


@routes.post("/teams")
async def create(request: web.Request) -> web.Response:
    fields = await form(request)
    message = admin_pb2.CreateTeamRequest(name=fields.get("name", "").strip(), **change_of(fields))
    try:
        reply = await call(request, "CreateTeam", message)
    except Refused as exc:
        # A name already taken is refused without naming a field: it is the name's problem.
        errors, status = refusal(exc, ("name",), default="name")
        return await _listing(request, values=fields, errors=errors, status=status)
    session_of(request).flash(
        f"Created team {reply.team.name} at revision {reply.revision}.", "success"
    )
    see_other(f"/teams/{reply.team.name}")


# --- one team ---------------------------------------------------------------------------


async def _team_page(
    request: web.Request,
    template: str = "team.html",
    *,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    """The team's page, or (`template`) the confirmation of its deletion."""
    name = request.match_info["name"]
    # Teams and users read apart: the revision of the teams' listing is the older, and
    # the one the forms expect (a change between the two reads makes them stale, never
    # lets one through unseen).
    message = admin_pb2.ListTeamsRequest()
    revision, team = await find_named(request, "ListTeams", message, "teams", name, "team")
    users = await call(request, "ListUsers", admin_pb2.ListUsersRequest())
    spend = await spending(request, "team")
    context = {
        "team": team,
        "revision": revision,
        "members": [u for u in users.users if u.name in team.members],
        "others": [u.name for u in users.users if u.name not in team.members],
        "spend": spend.of(team.id, budget_scopes("team", team.name)),
        "spending": spend,
        "limits": spend.set_of(f"team:{team.name}"),
        "errors": errors or {},
    }
    return render(request, template, context, status)


@routes.get("/teams/{name}")
async def team(request: web.Request) -> web.Response:
    return await _team_page(request)


async def _membership(
    request: web.Request, fields: dict[str, str], method: str, user: str
) -> web.Response:
    """AddTeamMember or RemoveTeamMember, then back to the team's page."""
    name = request.match_info["name"]
    message = admin_pb2.TeamMemberRequest(team=name, user=user, **change_of(fields))
    try:
        reply = await call(request, method, message)
    except Refused as exc:
        # Adding, what is refused is the user chosen; removing, the page as a whole.
        default = "user" if method == "AddTeamMember" else ""
        errors, status = refusal(exc, ("user",), default=default)
        return await _team_page(request, errors=errors, status=status)
    done = f"Added {user} to" if method == "AddTeamMember" else f"Removed {user} from"
    session_of(request).flash(
        f"{done} team {reply.team.name} at revision {reply.revision}.", "success"
    )
    see_other(f"/teams/{name}")


@routes.post("/teams/{name}/members")
async def add_member(request: web.Request) -> web.Response:
    fields = await form(request)
    return await _membership(request, fields, "AddTeamMember", fields.get("user", "").strip())


@routes.post("/teams/{name}/members/{user}/remove")
async def remove_member(request: web.Request) -> web.Response:
    fields = await form(request)
    return await _membership(request, fields, "RemoveTeamMember", request.match_info["user"])


# --- deleting, after a confirmation -----------------------------------------------------


@routes.get("/teams/{name}/delete")
async def confirm_delete(request: web.Request) -> web.Response:
    if not session_of(request).admin:  # a viewer has nothing to confirm
        see_other(f"/teams/{request.match_info['name']}")
    return await _team_page(request, "team_delete.html")


@routes.post("/teams/{name}/delete")
async def delete(request: web.Request) -> web.Response:
    fields = await form(request)
    message = admin_pb2.DeleteTeamRequest(ref=request.match_info["name"], **change_of(fields))
    try:
        reply = await call(request, "DeleteTeam", message)
    except Refused as exc:
        errors, status = refusal(exc, ())
        return await _team_page(request, "team_delete.html", errors=errors, status=status)
    session_of(request).flash(f"Deleted team {reply.name} at revision {reply.revision}.", "success")
    see_other("/teams")
