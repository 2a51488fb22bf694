"""What every aibridge process needs and none of them owns.

The controlplane, bridged, proxyd and aibridgectl all import this package:
- process plumbing: flags and settings (`flags`, `dataplane`), logging (`logs`,
  `access`), the event loop and exit status (`runtime`, `lifecycle`), supervised
  background tasks (`supervise`), retry pauses (`backoff`), probes and metrics
  (`probes`, `metrics`), the local state directory (`state`);
- rules both sides of the snapshot stream must agree on: token hashing and
  verification (`tokens`), which base_urls are usable (`urls`), wire limits (`wire`),
  text that can be stored (`text`);
- the data planes' side of the stream: the gRPC channel (`channel`) and the snapshot
  subscriber with its cache on disk (`subscriber`, `snapshot_file`).

It depends on the generated contract (`aibridge.v1`) and never on the database layer or
a process's own package (tests/test_layering.py checks).
"""
