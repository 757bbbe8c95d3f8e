"""The Wyoming listener: the library's TCP server with our connection handler, bound like the
HTTP server (Wyoming has no authentication), optionally announced over mDNS."""

from __future__ import annotations

import asyncio
import logging
import socket
from functools import partial
from typing import Any

from wyoming.server import AsyncTcpServer

from ..runtime import Runtime
from ..traffic import Traffic
from .handler import PROTOCOL, Connection

log = logging.getLogger(__name__)


class WyomingListener:
    def __init__(self, gw: Runtime, traffic: Traffic) -> None:
        self.gw, self.traffic = gw, traffic
        self.settings = gw.settings.wyoming
        self.host = self.settings.host or gw.settings.server.host
        self.port = self.settings.port  # the bound port once started (port 0: any free one)
        self.server = AsyncTcpServer(self.host, self.port)
        self._zeroconf: Any = None

    async def start(self) -> None:
        factory = partial(Connection, gw=self.gw, settings=self.settings, traffic=self.traffic)
        await self.server.start(factory)
        sockets = getattr(self.server._server, "sockets", None) or ()
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        address = f"{self.host}:{self.port}"
        self.traffic.listening[PROTOCOL] = address
        log.info("Wyoming listening on %s (no authentication: bind and network policy guard it)",
                 address)  # fmt: skip
        if self.settings.zeroconf:
            self._zeroconf = await announce(self.host, self.port)

    def close(self) -> None:
        """Stop taking new connections; the open ones go on until `stop`."""
        if self.server._server is not None:
            self.server._server.close()

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Close every connection (their queued units are taken back) and the listener."""
        self.close()
        handlers = list(self.server._handlers)
        await self.server.stop()
        if handlers:
            await asyncio.wait(handlers, timeout=timeout_s)
        if self._zeroconf is not None:
            await self._zeroconf.async_close()
        self.traffic.listening.pop(PROTOCOL, None)


async def announce(host: str, port: int) -> Any:
    """Register `_wyoming._tcp.local.` (zeroconf is imported only when this is on)."""
    from wyoming.zeroconf import HomeAssistantZeroconf

    bound = None if host in ("0.0.0.0", "", "::") else host
    announcer = HomeAssistantZeroconf(port, f"gateway-{socket.gethostname()}", bound)
    await announcer.register_server()
    log.info("Wyoming announced over zeroconf",
             extra={"service": announcer.name, "host": announcer.host})  # fmt: skip
    return announcer._aiozc
