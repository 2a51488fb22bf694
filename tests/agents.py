"""The real coding agents, Claude Code and Codex CLI, run as a user runs them.

`make test` installs the versions pinned in tests/clients/ from the npm registry into
the venv (`.venv/clients`). Each run gets a home directory of its own, so nothing a
developer has configured leaks in, and the agents' nonessential traffic (telemetry,
update checks) is off: this machine reaches no one but the local test servers.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.harness import clean_env

CLIENTS = Path(sys.prefix) / "clients" / "node_modules" / ".bin"


@dataclass
class AgentRun:
    returncode: int
    output: str  # stdout and stderr together, as a user sees them
    seconds: float


def _binary(name: str) -> str:
    path = CLIENTS / name
    if not path.exists():
        raise AssertionError(f"{path} is missing: `make test` installs the agents (tests/clients)")
    return str(path)


def _text(output: str | bytes | None) -> str:
    """What a TimeoutExpired caught, which can be bytes even with text=True."""
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def _run(command: list[str], env: dict[str, str], cwd: Path, timeout: float) -> AgentRun:
    started = time.monotonic()
    try:
        result = subprocess.run(
            command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
            text=True, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        output = _text(exc.stdout) + _text(exc.stderr)
        raise AssertionError(f"{command[0]} still running after {timeout}s:\n{output}") from None
    return AgentRun(result.returncode, result.stdout + result.stderr, time.monotonic() - started)


def _home(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def claude_code(
    prompt: str,
    home: Path,
    *,
    base_url: str,
    token: str,
    extra_env: dict[str, str] | None = None,
    timeout: float = 60,
) -> AgentRun:
    """`claude -p PROMPT` with the gateway as its Anthropic base URL (README's setup)."""
    env = clean_env() | {
        "HOME": str(_home(home)),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_AUTH_TOKEN": token,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    return _run([_binary("claude"), "-p", prompt], env | (extra_env or {}), home, timeout)


def codex(
    prompt: str,
    home: Path,
    *,
    base_url: str,
    token: str,
    extra_env: dict[str, str] | None = None,
    timeout: float = 60,
) -> AgentRun:
    """`codex exec PROMPT` with the gateway as a model provider (README's config.toml)."""
    _home(home)
    (home / "config.toml").write_text(
        'model_provider = "aibridge"\n'
        'model = "gpt-5"\n\n'
        "[model_providers.aibridge]\n"
        'name = "aibridge"\n'
        f'base_url = "{base_url}"\n'
        'env_key = "AIBRIDGE_TOKEN"\n'
        'wire_api = "responses"\n'
    )
    env = clean_env() | {"HOME": str(home), "CODEX_HOME": str(home), "AIBRIDGE_TOKEN": token}
    command = [_binary("codex"), "exec", "--skip-git-repo-check", prompt]
    return _run(command, env | (extra_env or {}), home, timeout)
