"""A local stand-in for OpenAI and Anthropic, and for Claude on Bedrock and Vertex AI
(clouds.py): what the tests and benchmarks play the providers with, and what a newcomer
tries the gateway with before using a real key."""

from mockupstream.clouds import MockBedrock, MockVertex, event_stream_frame
from mockupstream.server import ANTHROPIC_USAGE, OPENAI_USAGE, RESPONSES_USAGE, MockUpstream, Seen

__all__ = [
    "ANTHROPIC_USAGE", "OPENAI_USAGE", "RESPONSES_USAGE",
    "MockBedrock", "MockUpstream", "MockVertex", "Seen", "event_stream_frame",
]  # fmt: skip
