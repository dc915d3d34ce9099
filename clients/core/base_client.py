"""`BaseClient`: what the sync and the asyncio client share when they are made and keep
between calls (as httpx's `BaseClient` does for its two clients): the settings, resolved and
validated once; the channel plan; the chunk limit the server gave; and whether the batch
connections were spread over the server's worker processes. It opens no channel: each client
does that its own way (`_open_channels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clients.channels import ChannelPlan
from clients.core.chunks import ChunkLimit
from clients.core.spread import WorkerSpread
from clients.settings import ClientSettings


class BaseClient:
    """Give server addresses (`host:port`, a list or one text with commas), a
    `ClientSettings`, and/or any `ClientSettings` field as a keyword."""

    def __init__(
        self,
        servers: Sequence[str] | str | None = None,
        *,
        settings: ClientSettings | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = ClientSettings.resolve(servers, settings, **overrides)
        self._plan = ChannelPlan.of(self.settings)
        self._chunk_limit = ChunkLimit(self.settings)
        self._worker_spread = WorkerSpread(len(self.settings.servers))
        self._open_channels()

    def _open_channels(self) -> None:
        """Open (or prepare) the client's channels; each client does it its own way."""
        raise NotImplementedError
