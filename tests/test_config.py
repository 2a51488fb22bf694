"""Every process reads its flags the same way (common/flags.py): the command line wins over
the AIBRIDGE_* variable, which wins over the default; a value refused, from either, ends
the process with argparse's usage line, the reason, and exit status 2."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridged import config as bridged_config
from controlplane import config as controlplane_config
from proxyd import config as proxyd_config
from tests.harness import PYTHON, REPO, clean_env


@dataclass(frozen=True)
class Process:
    module: str  # run with python -m
    parse: Callable[[Sequence[str] | None, Mapping[str, str] | None], Any]
    flags: Sequence[Any]


PROCESSES = {
    "controlplane": Process("controlplane", controlplane_config.parse, controlplane_config.FLAGS),
    "bridged": Process("bridged", bridged_config.parse, bridged_config.FLAGS),
    "proxyd": Process("proxyd", proxyd_config.parse, proxyd_config.FLAGS),
}

# process, flag, its variable, the settings field it sets, its default, a value to give
SETTINGS = [
    ("controlplane", "--max-calls", "AIBRIDGE_MAX_CALLS", "max_calls", 16, 5),
    ("controlplane", "--listen", "AIBRIDGE_CONTROLPLANE_LISTEN", "listen", "127.0.0.1:50051",
     "0.0.0.0:7000"),
    ("bridged", "--max-connections", "AIBRIDGE_MAX_CONNECTIONS", "max_connections", 10_000, 7),
    ("bridged", "--listen", "AIBRIDGE_BRIDGED_LISTEN", "port", 8080, 7001),
    ("bridged", "--usage-flush-interval", "AIBRIDGE_USAGE_FLUSH_INTERVAL",
     "usage_flush_interval", 1.0, 0.25),
    ("bridged", "--limits-redis", "AIBRIDGE_LIMITS_REDIS", "limits_redis", None,
     "redis://127.0.0.1:6379/2"),
    ("bridged", "--limits-redis-prefix", "AIBRIDGE_LIMITS_REDIS_PREFIX", "limits_redis_prefix",
     "aibridge:", "gw-eu:"),
    ("bridged", "--limits-redis-timeout", "AIBRIDGE_LIMITS_REDIS_TIMEOUT",
     "limits_redis_timeout", 0.25, 0.5),
    ("bridged", "--upstream-idle-timeout", "AIBRIDGE_UPSTREAM_IDLE_TIMEOUT",
     "upstream_idle_timeout", 10.0, 2.5),
    ("proxyd", "--max-connections", "AIBRIDGE_MAX_CONNECTIONS", "max_connections", 10_000, 9),
    ("proxyd", "--bridged-idle-timeout", "AIBRIDGE_BRIDGED_IDLE_TIMEOUT", "bridged_idle_timeout",
     10.0, 3.0),
    ("proxyd", "--listen", "AIBRIDGE_PROXYD_LISTEN", "port", 8888, 7002),
    ("proxyd", "--bridged", "AIBRIDGE_BRIDGED_URL", "bridged_url", "http://127.0.0.1:8080",
     "http://b:1"),
]  # fmt: skip


def as_text(flag: str, value: object) -> str:
    return f"127.0.0.1:{value}" if flag == "--listen" and isinstance(value, int) else str(value)


@pytest.mark.parametrize(("process", "flag", "variable", "field", "default", "value"), SETTINGS)
def test_the_flag_wins_over_its_variable_which_wins_over_the_default(
    tmp_path: Path, process: str, flag: str, variable: str, field: str, default: object,
    value: object,
) -> None:  # fmt: skip
    parse = PROCESSES[process].parse
    state = ["--state-dir", str(tmp_path)]
    assert getattr(parse(state, {}), field) == default
    from_env = parse(state, {variable: as_text(flag, value)})
    assert getattr(from_env, field) == value
    given = parse([*state, flag, as_text(flag, value)], {variable: as_text(flag, default)})
    assert getattr(given, field) == value


# process, variable, a value it refuses, what the error says
REFUSED = [
    ("controlplane", "AIBRIDGE_MAX_CALLS", "0", "--max-calls and --max-streams must be at least 1"),
    ("controlplane", "AIBRIDGE_MAX_STREAMS", "many", "argument --max-streams: invalid int value"),
    ("controlplane", "AIBRIDGE_TLS_CERT", "cert.pem", "--tls-cert and --tls-key go together"),
    ("controlplane", "AIBRIDGE_RETENTION", "60 days", "argument --retention: invalid duration"),
    # Past a timedelta's range, or past the dates now − retention reaches.
    ("controlplane", "AIBRIDGE_RETENTION", "99999999999w", "at most 36500d (100 years)"),
    ("controlplane", "AIBRIDGE_RETENTION", "1000000w", "argument --retention: invalid duration"),
    ("controlplane", "AIBRIDGE_RETENTION_INTERVAL", "0", "--retention-interval must be positive"),
    (
        "controlplane",
        "AIBRIDGE_CONTROLPLANE_METRICS_LISTEN",
        "nowhere",
        "--metrics-listen: expected HOST:PORT",
    ),
    ("bridged", "AIBRIDGE_MAX_CONNECTIONS", "0", "--max-connections must be positive"),
    ("bridged", "AIBRIDGE_BRIDGED_LISTEN", "nowhere", "--listen: expected HOST:PORT"),
    ("bridged", "AIBRIDGE_IDLE_READ_TIMEOUT", "soon", "--idle-read-timeout: invalid float"),
    ("bridged", "AIBRIDGE_LIMITS_REDIS", "127.0.0.1:6379", "--limits-redis: expected a redis://"),
    ("bridged", "AIBRIDGE_LIMITS_REDIS_TIMEOUT", "0", "--limits-redis-timeout must be positive"),
    ("bridged", "AIBRIDGE_UPSTREAM_IDLE_TIMEOUT", "0", "--upstream-idle-timeout must be positive"),
    ("proxyd", "AIBRIDGE_PROXY_CA_CERT", "ca.pem", "--ca-cert and --ca-key go together"),
    ("proxyd", "AIBRIDGE_BRIDGED_IDLE_TIMEOUT", "-1", "--bridged-idle-timeout must be positive"),
    ("proxyd", "AIBRIDGE_TUNNEL_PORTS", "443,https", "invalid literal for int()"),
    ("proxyd", "AIBRIDGE_CERT_CACHE_SIZE", "lots", "argument --cert-cache-size: invalid int value"),
    # argparse checks a flag's choices, not its default: a variable's value must be too.
    ("proxyd", "AIBRIDGE_TUNNEL", "DENY", "argument --tunnel: invalid choice: 'DENY'"),
    ("bridged", "AIBRIDGE_ACCESS_LOG", "yes", "argument --access-log: invalid choice: 'yes'"),
    ("controlplane", "AIBRIDGE_LOG_FORMAT", "xml", "argument --log-format: invalid choice"),
]


def flag_of(variable: str, flags: Sequence[Any]) -> str:
    return next(flag.name for flag in flags if flag.env == variable)


@pytest.mark.parametrize(("process", "variable", "value", "says"), REFUSED)
def test_a_refused_value_is_refused_alike_from_the_flag_and_the_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], process: str, variable: str, value: str,
    says: str,
) -> None:  # fmt: skip
    p = PROCESSES[process]
    state = ["--state-dir", str(tmp_path)]
    flag = flag_of(variable, p.flags)
    for argv, env in ((state, {variable: value}), ([*state, flag, value], {})):
        with pytest.raises(SystemExit) as exit:
            p.parse(argv, env)
        assert exit.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"usage: aibridge-{process}") and says in err, err


@pytest.mark.parametrize("process", PROCESSES)
def test_a_good_flag_overrides_a_bad_variable(tmp_path: Path, process: str) -> None:
    flag, variable = {
        "controlplane": ("--max-calls", "AIBRIDGE_MAX_CALLS"),
        "bridged": ("--max-connections", "AIBRIDGE_MAX_CONNECTIONS"),
        "proxyd": ("--cert-cache-size", "AIBRIDGE_CERT_CACHE_SIZE"),
    }[process]
    settings = PROCESSES[process].parse(
        ["--state-dir", str(tmp_path), flag, "3"], {variable: "not a number"}
    )
    assert getattr(settings, flag.lstrip("-").replace("-", "_")) == 3


@pytest.mark.parametrize("process", PROCESSES)
def test_every_flag_names_its_variable_in_the_help(
    capsys: pytest.CaptureFixture[str], process: str
) -> None:
    p = PROCESSES[process]
    with pytest.raises(SystemExit) as exit:
        p.parse(["--help"], {})
    assert exit.value.code == 0
    help = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for flag in p.flags:
        assert flag.name in help and f"[env {flag.env}]" in help, flag.name


@pytest.mark.parametrize("process", PROCESSES)
def test_the_program_exits_2_on_a_refused_variable(tmp_path: Path, process: str) -> None:
    """The real entry point: nothing is started, the reason is on stderr."""
    variable, says = {
        "controlplane": ("AIBRIDGE_MAX_STREAMS", "--max-streams must be at least 1"),
        "bridged": ("AIBRIDGE_MAX_CONNECTIONS", "--max-connections must be positive"),
        "proxyd": ("AIBRIDGE_MAX_CONNECTIONS", "invalid int value"),
    }[process]
    value = "x" if process == "proxyd" else "0"
    done = subprocess.run(
        [PYTHON, "-m", PROCESSES[process].module, "--state-dir", str(tmp_path)],
        cwd=REPO, env={**clean_env(), variable: value}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
