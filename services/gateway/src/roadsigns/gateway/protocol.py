"""uvicorn's h11 protocol with a deadline on each request's head, and 431 for an oversized one.

uvicorn times out an idle keep-alive connection, but a client that trickles a request's headers
a byte at a time (slowloris) resets nothing it measures and holds the connection for ever. Run
with `uvicorn --http roadsigns.gateway.protocol:HeadDeadlineH11Protocol`; the deadline is
`ROADSIGNS_HEADER_TIMEOUT_S`, the size limit uvicorn's `--h11-max-incomplete-event-size`.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from roadsigns.shared.settings import get_settings

log = logging.getLogger("uvicorn.error")


class HeadDeadlineH11Protocol(H11Protocol):
    """From connect, and again after each response, the next request's head must arrive in full
    within the deadline, however the bytes are spaced; otherwise the connection is closed."""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # the head is in (or the connection failed)
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE:  # waiting for the next request on this connection
            self._arm_head_deadline()

    def send_400_response(self, msg: str) -> None:
        """h11 refuses a head past its buffer limit as a protocol error; tell the client which."""
        limit = self.config.h11_max_incomplete_event_size or 16 * 1024  # h11's own default
        if len(self.conn.trailing_data[0]) > limit:
            self._send_status(431, f"the request head is larger than {limit} bytes")
        else:
            super().send_400_response(msg)

    def _send_status(self, status: int, msg: str) -> None:
        if self.conn.our_state is h11.IDLE:
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
            self.transport.write(self.conn.send(h11.Response(status_code=status, headers=headers)))
            self.transport.write(self.conn.send(h11.Data(data=msg.encode())))
            self.transport.write(self.conn.send(h11.EndOfMessage()))
        self.transport.close()

    def _arm_head_deadline(self) -> None:
        if self._head_timer is None and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(get_settings().header_timeout_s, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.info("closing a connection whose request head did not arrive within the deadline")
            self.transport.close()
