"""uvicorn's httptools protocol with a deadline on each request's head, and 431 for an oversized one.

uvicorn times out an idle keep-alive connection, but a client that trickles a request's headers
a byte at a time (slowloris) resets nothing it measures and holds the connection for ever. Run
with `uvicorn --http roadsigns.gateway.protocol:HeadDeadlineHttpToolsProtocol`; the deadline is
`ROADSIGNS_HEADER_TIMEOUT_S`, the size limit uvicorn's `--h11-max-incomplete-event-size` (the
flag uvicorn has for a head's size; llhttp itself has none). An h11 version of the same class
served until llhttp's lower cost was measured (issue 14); git history has it.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from roadsigns.shared.settings import get_settings

log = logging.getLogger("uvicorn.error")


class HeadDeadlineHttpToolsProtocol(HttpToolsProtocol):
    """The head deadline and 431 on uvicorn's httptools protocol, whose parser (llhttp, in C)
    costs a fraction of h11's: under wrk, h11 held the GIL for a fifth of the gateway's time.

    A head is awaited once every request received has been read to its end and answered: from
    connect, and after each response unless the next request's head is already in (pipelined).
    Bytes that arrive once every request is in full are the next head's, and counted: past
    `--h11-max-incomplete-event-size` (llhttp has no limit of its own) the head is refused with
    431, once any response still being written is done (reading pauses until then). A head that
    begins in the read that ends the request before it is counted from the next read on: it may
    overrun the limit by that one read (the deadline still holds it)."""

    _head_timer: asyncio.TimerHandle | None = None
    _heads = 0  # heads received in full on this connection
    _bodies = 0  # requests received to their end
    _answered = 0  # responses sent
    _head_bytes = 0  # bytes of the next head received so far

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _awaiting_head(self) -> bool:
        return self._heads == self._bodies == self._answered

    def data_received(self, data: bytes) -> None:
        if self._heads == self._bodies:  # every request is in: these bytes begin the next head
            self._head_bytes += len(data)
        super().data_received(data)
        self._check_head_size()

    def _check_head_size(self) -> None:
        limit = self.config.h11_max_incomplete_event_size or 16 * 1024  # uvicorn's default for h11
        if self._heads != self._bodies or self._head_bytes <= limit or self.transport.is_closing():
            return
        if self._answered == self._heads:
            self._refuse_head(f"the request head is larger than {limit} bytes")
        else:  # a response is still being written: read no more; on_response_complete refuses
            self.flow.pause_reading()

    def on_headers_complete(self) -> None:
        self._heads += 1
        self._head_bytes = 0
        self._disarm_head_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._bodies += 1
        super().on_message_complete()
        if self._awaiting_head():  # answered before its body was all in (a 413, say)
            self._arm_head_deadline()

    def on_response_complete(self) -> None:
        self._answered += 1
        super().on_response_complete()  # resumes reading
        if self._awaiting_head():
            self._arm_head_deadline()
            self._check_head_size()

    def _refuse_head(self, msg: str) -> None:
        body = msg.encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
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
        if self._awaiting_head() and not self.transport.is_closing():
            log.info("closing a connection whose request head did not arrive within the deadline")
            self.transport.close()
