"""What every aibridge process needs and none of them owns.

The controlplane, bridged, proxyd and aibridgectl all import this package: process
plumbing (flags, logging, lifecycle, metrics, runtime), the gRPC channel and its
credentials, and the snapshot subscriber with its cache that the data planes use.

It depends only on the generated contract (`aibridge.v1`) and never imports the
database layer: the data planes depend on this package, never on the controlplane.
"""

from common.channel import ClientTLS
from common.subscriber import (
    ApplyResult,
    ProviderSnapshot,
    SkippedProvider,
    Subscriber,
)

__all__ = ["ApplyResult", "ClientTLS", "ProviderSnapshot", "SkippedProvider", "Subscriber"]
