"""What a tokens-per-minute limit counts of a call (bridged/usage.py Usage.tpm_tokens):
all its input and its output, whichever way the provider reports cached input."""

from __future__ import annotations

from bridged.usage import Usage


def test_anthropic_input_adds_its_cache_reads_and_writes() -> None:
    usage = Usage()
    usage.read_anthropic(
        {
            "input_tokens": 13,
            "output_tokens": 5,
            "cache_read_input_tokens": 4,
            "cache_creation_input_tokens": 2,
        }
    )
    assert usage.tpm_tokens("anthropic") == 13 + 4 + 2 + 5


def test_openai_input_already_holds_its_cached_tokens() -> None:
    chat = Usage()
    chat.read_chat(
        {"prompt_tokens": 11, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 3}}
    )
    assert chat.tpm_tokens("openai") == 11 + 7
    responses = Usage()
    responses.read_responses(
        {"input_tokens": 11, "output_tokens": 7, "input_tokens_details": {"cached_tokens": 3}}
    )
    assert responses.tpm_tokens("openai") == 11 + 7
