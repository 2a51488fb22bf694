"""A subscriber in its own process, for tests that freeze or kill one:
python -m tests.run_subscriber ADDRESS ROLE TOKEN ID [KEEPALIVE_SECONDS]"""

from __future__ import annotations

import asyncio
import sys

from common.subscriber import Subscriber


async def main(address: str, role: str, token: str, subscriber_id: str, keepalive: float) -> None:
    sub = Subscriber(
        [address], role, token, lambda _s: None, subscriber_id=subscriber_id,
        keepalive_seconds=keepalive,
    )  # fmt: skip
    await sub.run()


if __name__ == "__main__":
    address, role, token, subscriber_id, *rest = sys.argv[1:]
    asyncio.run(main(address, role, token, subscriber_id, float(rest[0]) if rest else 10.0))
