"""Facts the controlplane, both data planes and the admin clients must agree on beyond
the protobufs."""

from __future__ import annotations

from dataclasses import dataclass

# OpenAI-compatible kinds speak OpenAI's wire format at their own base URL.
OPENAI_COMPATIBLE_TYPES = ("openai", "openai-compatible", "azure-openai", "openrouter", "ollama")
# bedrock and vertex: Claude on AWS and Google Cloud (common/clouds.py).
PROVIDER_TYPES = ("openai", "anthropic", *OPENAI_COMPATIBLE_TYPES[1:], "bedrock", "vertex")

# Headers about one connection, never forwarded by a hop (RFC 9110 §7.6.1, plus the
# proxy headers clients still send).
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade", "proxy-connection"}
)  # fmt: skip

# The largest request the controlplane takes from a data plane, per service
# (controlplane/limits.py). A usage batch: bridged cuts its batches under it
# (bridged/usage_reporter.py MAX_BATCH_BYTES). An Ack lists every provider row the
# subscriber skipped: about 130 bytes a row with the reasons bridged and proxyd give
# (1.3 MB at 10,000 providers), about 600 with a reason of the 500 characters kept. At
# 10,000 providers every row fits unless the reasons average over about 350 characters;
# past the limit the subscriber lists the rows that fit and how many it left out
# (subscriber.ack_request).
MAX_USAGE_REQUEST_BYTES = 4 * 1024 * 1024
MAX_SYNC_REQUEST_BYTES = 4 * 1024 * 1024
SKIPPED_REASON_MAX = 500  # characters of a skipped provider's reason that are kept
ACK_ERROR_MAX = 1000  # characters of a rejected snapshot's error that are kept


@dataclass(frozen=True)
class SkippedProvider:
    """A provider row a data plane could not use (the others it serves), as its ack
    reports it and the controlplane keeps it."""

    provider_id: str
    name: str
    reason: str


# Admin mutations' idempotency keys (controlplane/idempotency.py): the longest request_id
# taken, and the trailing metadata that says an answer replays an applied change's.
MAX_REQUEST_ID = 128
REPLAYED_METADATA = "aibridge-replayed"
