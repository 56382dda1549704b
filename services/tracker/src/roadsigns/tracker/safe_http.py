"""One guarded POST to a callback URL: the addresses it may reach, the time it may take and the
bytes it may read are all bounded.

Built on httpcore (the maintained engine under httpx) through its public network-backend
interface, so the checks sit where the sockets are made:
- the host is resolved once; every address it resolves to is checked against the callback
  policy (roadsigns.shared.callbacks) and the connection goes to one of those checked
  addresses, so a name cannot re-resolve to another address between check and connect
  (DNS rebinding); TLS still verifies the certificate against the host name;
- one total deadline per attempt: each socket read and write gets only the time left, so a
  receiver that trickles a byte every second cannot hold the worker beyond it;
- the response body is read up to a small cap and the connection closed; nothing is
  decompressed (httpcore never decodes; `Accept-Encoding: identity` is asked for);
- no redirects, no proxies from the environment, no credentials in the URL (refused earlier).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable
from typing import Any

import httpcore

from roadsigns.shared.callbacks import CallbackRefused, Target, check_url, is_public


class DeadlinePassed(httpcore.TimeoutException):
    pass


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self.inner, self.deadline = inner, deadline

    def _left(self, timeout: float | None) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DeadlinePassed("the callback's deadline passed")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, self._left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, self._left(timeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self.inner.start_tls(ssl_context, server_hostname, self._left(timeout)), self.deadline)

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class GuardedBackend(httpcore.NetworkBackend):
    """Connects only to checked addresses, and bounds every stream by one deadline."""

    def __init__(self, allow_private: bool, deadline: float) -> None:
        self.allow_private, self.deadline = allow_private, deadline
        self.inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:  # every one, not only the one used
            if not self.allow_private and not is_public(ipaddress.ip_address(address.split("%")[0])):
                raise CallbackRefused(f"{host} resolves to {address}, not a public address: refused at connect time")
        error: Exception | None = None
        for address in addresses:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise DeadlinePassed("the callback's deadline passed while connecting")
            try:
                stream = self.inner.connect_tcp(
                    address, port, min(timeout or left, left), local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                error = exc
                continue
            return _DeadlineStream(stream, self.deadline)
        raise error or httpcore.ConnectError(f"{host} resolves to no address")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    deadline_s: float,
    max_response_bytes: int,
    allow_private: bool = False,
) -> int:
    """POST `body` to `url` once; return the HTTP status.

    Raises CallbackRefused for a URL or address the policy refuses, httpcore errors for
    connection failures and timeouts (the deadline included).
    """
    target = check_url(url, allow_private)
    deadline = time.monotonic() + deadline_s
    request_headers = [
        ("Host", target.host_header),
        ("Content-Length", str(len(body))),
        ("Accept-Encoding", "identity"),
        ("Connection", "close"),
        *headers.items(),
    ]
    timeouts = {"connect": deadline_s, "read": deadline_s, "write": deadline_s, "pool": deadline_s}
    backend = GuardedBackend(allow_private, deadline)
    try:
        return _send(backend, target, request_headers, body, timeouts, max_response_bytes)
    except httpcore.TimeoutException as exc:
        if time.monotonic() >= deadline - 0.05:  # the socket's timeout was the time left
            raise DeadlinePassed(f"no complete answer within the {deadline_s:g} s deadline") from exc
        raise


def _send(
    backend: GuardedBackend,
    target: Target,
    headers: list[tuple[str, str]],
    body: bytes,
    timeouts: dict[str, float],
    max_response_bytes: int,
) -> int:
    with httpcore.ConnectionPool(
        ssl_context=ssl.create_default_context(), network_backend=backend, max_connections=1, retries=0
    ) as pool:
        with pool.stream(
            "POST",
            httpcore.URL(scheme=target.scheme, host=target.host, port=target.port, target=target.target),
            headers=headers,
            content=body,
            extensions={"timeout": timeouts},
        ) as response:
            read = 0
            for chunk in response.iter_stream():  # drained up to the cap, then the connection is closed
                read += len(chunk)
                if read >= max_response_bytes:
                    break
            return response.status
