"""What every process that talks to the controlplane needs: channels, credentials,
configuration helpers, logging, and the snapshot subscriber that bridged and proxyd use.

It never imports the database: the data planes depend on this package alone.
"""

from controlplane.client.channel import ClientTLS
from controlplane.client.subscriber import (
    ApplyResult,
    ProviderSnapshot,
    SkippedProvider,
    Subscriber,
)

__all__ = ["ApplyResult", "ClientTLS", "ProviderSnapshot", "SkippedProvider", "Subscriber"]
