"""A local stand-in for OpenAI and Anthropic: what the tests and benchmarks play the
providers with, and what a newcomer tries the gateway with before using a real key."""

from mockupstream.server import ANTHROPIC_USAGE, OPENAI_USAGE, RESPONSES_USAGE, MockUpstream, Seen

__all__ = ["ANTHROPIC_USAGE", "OPENAI_USAGE", "RESPONSES_USAGE", "MockUpstream", "Seen"]
