"""What bridged records of each intercepted call, beyond its usage: the client and its
session, the last prompt, the tool calls the model made and the tool results the client
sent, why the model stopped, errors, reasoning. Read from the request body once, and from
the response as it streams past; bounded as the gateway's settings say (settings.py)."""

from bridged.capture.recording import Recording
from bridged.capture.settings import CaptureSettings

__all__ = ["CaptureSettings", "Recording"]
