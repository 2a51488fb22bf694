"""What bridged records of each intercepted call: the gateway's settings, as the snapshot
carries them, and the bounds that hold whatever the settings say."""

from __future__ import annotations

from dataclasses import dataclass

from aibridge.v1 import snapshot_pb2

DEFAULT_MAX_TEXT_BYTES = 32 * 1024
# A record's texts together (prompt, tool call arguments, reasoning): a call's record
# stays far under the controlplane's 4 MiB limit on a usage request, and what bridged
# holds while assembling it stays bounded.
RECORD_TEXT_BYTES = 1024 * 1024
MAX_TOOL_CALLS = 64  # per record; tool results too
MAX_NAME = 200  # characters of a tool call's id or name, of a session id
MAX_ERROR_MESSAGE = 1000  # characters of an error message


@dataclass(frozen=True)
class CaptureSettings:
    prompts: bool = True
    tool_calls: bool = True
    reasoning: bool = False
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES

    @classmethod
    def of(cls, snapshot: snapshot_pb2.ProviderSnapshot) -> CaptureSettings:
        if not snapshot.HasField("settings"):
            return cls()  # an older controlplane: every setting at its default
        s = snapshot.settings
        size = s.record_max_text_bytes
        return cls(
            s.record_prompts, s.record_tool_calls, s.record_reasoning,
            size if size > 0 else DEFAULT_MAX_TEXT_BYTES,
        )  # fmt: skip
