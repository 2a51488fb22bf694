"""`aibridge-mock-upstream` (`make demo-upstream`): answers like OpenAI and Anthropic, on
one port, so that the gateway can be tried without a provider key. Any key is taken."""

from __future__ import annotations

import argparse
import signal
import threading

from mockupstream.server import MockUpstream


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="aibridge-mock-upstream",
        description="A local stand-in for OpenAI (base URL http://HOST:PORT/v1) and Anthropic "
        "(http://HOST:PORT): canned answers, streamed or not, with usage.",
    )
    parser.add_argument("--listen", default="127.0.0.1:9999", help="HOST:PORT to serve on")
    parser.add_argument("--chunks", type=int, default=4, help="chunks in a streamed answer")
    parser.add_argument("--chunk-delay", type=float, default=0.05,
                        help="seconds between streamed chunks")  # fmt: skip
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    if not port.isdigit():
        parser.error(f"--listen: expected HOST:PORT, not {args.listen!r}")
    upstream = MockUpstream(
        "the mock upstream", host=host.strip("[]") or "127.0.0.1", port=int(port),
        chunks=args.chunks, chunk_delay=args.chunk_delay, record=False,
    ).start()  # fmt: skip
    print(f"mock OpenAI on {upstream.url}/v1 and mock Anthropic on {upstream.url}; any key "
          "works. Ctrl-C stops it.", flush=True)  # fmt: skip
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    upstream.stop()


if __name__ == "__main__":
    main()
