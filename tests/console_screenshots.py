"""Screenshots of every console page, for docs/console/ (`make console-screenshots`):
a stack of real processes with a team's worth of providers, users, limits and a day of
calls (real calls through bridged to the mock upstream, and older ones reported as
bridged reports them), each page captured in Chromium at laptop width, and the overview
at phone width too."""

from __future__ import annotations

import random
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from google.protobuf.timestamp_pb2 import Timestamp
from playwright.sync_api import Page

from aibridge.v1 import admin_pb2, usage_pb2
from mockupstream import MockUpstream
from tests.console import LAPTOP, PHONE, ConsoleStack, chromium, console_stack, sign_in
from tests.harness import report, wait_until

USERS = (("alice", "alice@example.com"), ("bob", "bob@example.com"), ("carol", ""))
MODELS = (("openai", "gpt-5-mini"), ("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"))
PROMPTS = (
    "Refactor the retry loop in the upstream client to use the shared backoff",
    "Why does the migration fail on PostgreSQL but not on SQLite?",
    "Write a test for the stale form path of the providers page",
    "Summarise the failing CI job's log",
)


def seed(stack: ConsoleStack, upstream: MockUpstream) -> dict[str, str]:
    """What the pages show; returns ids the captured paths need."""
    admin = stack.controlplane.admin
    admin.create_provider("openai", base_url=upstream.url + "/v1", keys=["sk-demo-openai-0001"],
                          display_name="OpenAI")  # fmt: skip
    admin.create_provider("anthropic", base_url=upstream.url, type="anthropic",
                          keys=["sk-ant-demo-0002"], display_name="Anthropic")  # fmt: skip
    for name, email in USERS:
        admin.CreateUser(admin_pb2.CreateUserRequest(name=name, email=email))
    admin.CreateTeam(admin_pb2.CreateTeamRequest(name="platform"))
    for member in ("alice", "bob"):
        admin.AddTeamMember(admin_pb2.TeamMemberRequest(team="platform", user=member))
    admin.SetLimits(admin_pb2.SetLimitsRequest(scope="user:alice", monthly_budget_usd=5.0,
                                               requests_per_minute=120))  # fmt: skip
    admin.SetLimits(admin_pb2.SetLimitsRequest(scope="team:platform", monthly_budget_usd=50.0,
                                               tokens_per_minute=200_000))  # fmt: skip
    tokens = {
        user: admin.CreateToken(admin_pb2.CreateTokenRequest(name=f"{user}-laptop", user=user))
        for user, _ in USERS
    }
    admin.wait_applied(admin.revision())
    session = "demo-session-1"
    with httpx.Client(timeout=30) as client:
        for i, prompt in enumerate(PROMPTS * 2):
            user = USERS[i % len(USERS)][0]
            headers = {"authorization": f"Bearer {tokens[user].token}",
                       "x-aibridge-session-id": session if user == "alice" else ""}  # fmt: skip
            tools = [{"type": "function", "function": {"name": "read_file", "parameters": {
                "type": "object", "properties": {"path": {"type": "string"}}}}}]  # fmt: skip
            client.post(
                stack.bridged.provider_url("openai") + "/v1/chat/completions",
                headers={k: v for k, v in headers.items() if v},
                json={"model": "gpt-5-mini", "messages": [{"role": "user", "content": prompt}],
                      "tools": tools, "stream": i % 2 == 0},
            ).raise_for_status()  # fmt: skip
    calls = len(PROMPTS) * 2
    wait_until(lambda: _requests(stack) >= calls, 30, "the calls' usage")
    _report_history(stack, {user: info.info for user, info in tokens.items()})
    listed = admin.ListInterceptions(admin_pb2.ListInterceptionsRequest(limit=1))
    return {"interception": listed.interceptions[0].id, "session": session}


def _requests(stack: ConsoleStack) -> int:
    rows = stack.controlplane.admin.QueryUsage(admin_pb2.QueryUsageRequest()).rows
    return sum(r.requests for r in rows)


def _report_history(stack: ConsoleStack, tokens: dict[str, admin_pb2.Token]) -> None:
    """A day of earlier calls, as bridged would have reported them."""
    admin = stack.controlplane.admin
    providers = {p.name: p for p in admin.ListProviders(admin_pb2.ListProvidersRequest()).providers}
    now = datetime.now(UTC)
    rng = random.Random(15)
    records = []
    for i in range(400):
        provider, model = rng.choice(MODELS)
        token = tokens[rng.choice(USERS)[0]]
        started = Timestamp()
        started.FromDatetime(now - timedelta(minutes=rng.uniform(5, 24 * 60)))
        records.append(usage_pb2.Interception(
            request_id=f"history-{i}", started_at=started, token_id=token.id,
            token_name=token.name, provider_id=providers[provider].id, provider_name=provider,
            provider_type=providers[provider].type, model=model, route="/v1/chat/completions",
            status=rng.choice((200,) * 30 + (429, 500)), input_tokens=rng.randint(800, 9000),
            output_tokens=rng.randint(50, 1500), streaming=True, ttfb_ms=rng.uniform(150, 900),
            duration_ms=rng.uniform(800, 9000), user_agent="claude-cli/2.0.0 (external, cli)",
            client="claude-code", prompt=rng.choice(PROMPTS),
        ))  # fmt: skip
    report(stack.controlplane, records, stack.secrets.bridged)


def pages(ids: dict[str, str]) -> list[tuple[str, str]]:
    """(file name, path) of every page captured."""
    return [
        ("overview", "/"),
        ("providers", "/providers"),
        ("provider", "/providers/openai"),
        ("provider-delete", "/providers/openai/delete"),
        ("tokens", "/tokens"),
        ("usage", "/usage?range=24h&by=model&metric=requests"),
        ("interceptions", "/interceptions"),
        ("interception", f"/interceptions/{ids['interception']}"),
        ("sessions", "/interceptions/sessions"),
        ("session", f"/interceptions/sessions/{ids['session']}"),
        ("users", "/users"),
        ("user", "/users/alice"),
        ("user-delete", "/users/alice/delete"),
        ("teams", "/teams"),
        ("team", "/teams/platform"),
        ("team-delete", "/teams/platform/delete"),
        ("limits", "/limits"),
        ("prices", "/prices"),
        ("audit", "/audit"),
    ]


# Long pages (a list of 50 calls) are cut here: the top shows what the page is.
MAX_HEIGHT = 1800


def shot(page: Page, path: Path) -> None:
    width = page.viewport_size["width"] if page.viewport_size else LAPTOP["width"]
    height = min(page.evaluate("document.documentElement.scrollHeight"), MAX_HEIGHT)
    page.screenshot(
        path=path, full_page=True, clip={"x": 0, "y": 0, "width": width, "height": height}
    )


def capture(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    upstream = MockUpstream().start()
    with (
        tempfile.TemporaryDirectory() as work,
        console_stack(f"sqlite:///{work}/aibridge.db", Path(work)) as stack,
    ):
        ids = seed(stack, upstream)
        with chromium() as browser:
            context = browser.new_context(viewport=LAPTOP)
            page = context.new_page()
            page.goto(stack.url + "/signin")
            page.screenshot(path=directory / "signin.png")
            sign_in(page, stack.url, stack.secrets.admin)
            for name, path in pages(ids):
                if name.endswith("-delete"):
                    continue  # a question and a button: nothing to see
                page.goto(stack.url + path)
                shot(page, directory / f"{name}.png")
                print(f"{directory / name}.png  {path}")
            phone = browser.new_context(viewport=PHONE, device_scale_factor=2)
            small = phone.new_page()
            sign_in(small, stack.url, stack.secrets.admin)
            shot(small, directory / "overview-phone.png")
    upstream.stop()


if __name__ == "__main__":
    capture(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console"))
