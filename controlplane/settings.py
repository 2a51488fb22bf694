"""The gateway settings an administrator may change: their types, defaults and bounds.

A setting is stored as text, in the form `aibridgectl settings list` shows ("on"/"off"
for a switch, a plain number for a size). Each becomes the field of GatewaySettings
named like its key with the dot an underscore (`record.prompts` → `record_prompts`),
which the snapshot carries to bridged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aibridge.v1 import snapshot_pb2
from controlplane.errors import InvalidArgument

_ON = ("on", "true", "yes", "1")
_OFF = ("off", "false", "no", "0")


@dataclass(frozen=True)
class SettingSpec:
    key: str
    default: str
    description: str
    # A size in bytes between these bounds; a switch when None (and no choices).
    bounds: tuple[int, int] | None = None
    # One of these words.
    choices: tuple[str, ...] = ()

    @property
    def field(self) -> str:
        """Its field in snapshot_pb2.GatewaySettings."""
        return self.key.replace(".", "_")

    def accepts(self) -> str:
        if self.choices:
            return " or ".join(self.choices)
        if self.bounds is None:
            return "on or off (also true/false, yes/no, 1/0)"
        low, high = self.bounds
        return f"a whole number of bytes from {low} to {high}"

    def normalise(self, value: str) -> str:
        """`value` in its stored form; raises InvalidArgument naming the key."""
        text = value.strip().lower()
        if self.choices:
            if text in self.choices:
                return text
        elif self.bounds is None:
            if text in _ON:
                return "on"
            if text in _OFF:
                return "off"
        elif text.isascii() and text.isdigit() and self.bounds[0] <= int(text) <= self.bounds[1]:
            return str(int(text))
        raise InvalidArgument(self.key, f"{value[:50]!r} is not {self.accepts()}")

    def typed(self, stored: str) -> bool | int | str:
        if self.choices:
            return stored
        return stored == "on" if self.bounds is None else int(stored)


SETTINGS = {
    s.key: s
    for s in (
        SettingSpec("record.prompts", "on", "record the last user prompt of each call"),
        SettingSpec("record.tool_calls", "on", "record the tool calls the model made"),
        SettingSpec("record.reasoning", "off", "record the model's thinking or reasoning summary"),
        SettingSpec(
            "record.max_text_bytes",
            "32768",
            "bytes kept of each recorded text (a prompt, a tool call's arguments)",
            bounds=(1024, 262144),
        ),
        SettingSpec(
            "limits.redis_unavailable",
            "open",
            "when bridged cannot reach its --limits-redis: admit (open) or refuse with 503 "
            "(closed)",
            choices=("open", "closed"),
        ),
    )
}


def spec(key: str) -> SettingSpec:
    found = SETTINGS.get(key)
    if found is None:
        raise InvalidArgument("key", f"unknown setting {key[:64]!r}: one of {', '.join(SETTINGS)}")
    return found


def gateway_settings(stored: Mapping[str, str]) -> snapshot_pb2.GatewaySettings:
    """What bridged is sent: every known setting, its stored value or its default. A stored
    value this release cannot read (written by another) counts as the default."""
    message = snapshot_pb2.GatewaySettings()
    for s in SETTINGS.values():
        try:
            value = s.normalise(stored.get(s.key, s.default))
        except InvalidArgument:
            value = s.default
        setattr(message, s.field, s.typed(value))
    return message
