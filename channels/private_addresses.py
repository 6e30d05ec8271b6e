"""Outbound connections that must not reach private addresses (dialogs' HTTP calls, the
generic webhook's callbacks): a socket factory checks the very address about to be
connected to, after DNS and on each redirect hop, so a name that resolves to a public
address at one moment and to ``127.0.0.1`` the next cannot slip through."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

from aiohappyeyeballs import AddrInfoType, SocketFactoryType


class ForbiddenAddress(OSError):
    """Raised by the guarded socket factory for an address dialogs may not reach."""


def forbidden(address: str) -> bool:
    """Whether ``address`` is private, loopback, link-local, multicast, reserved, unspecified
    or otherwise not globally routable (IPv4-mapped, 6to4 and Teredo IPv6 checked as IPv4)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and forbidden(str(embedded)):
            return True
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def guarded_socket_factory(
    refuse: Callable[[str], bool], *, then: SocketFactoryType | None = None
) -> SocketFactoryType:
    """A socket factory for the connector that refuses, before a single packet is sent, every
    address ``refuse`` names: the check sees the very address about to be connected to.
    ``then`` makes the sockets it allows (a plain socket when not given)."""

    def factory(addr_info: AddrInfoType) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        address = str(sockaddr[0])
        if refuse(address):
            raise ForbiddenAddress(f"{address} is a private or reserved address")
        if then is not None:
            return then(addr_info)
        return socket.socket(family=family, type=type_, proto=proto)

    return factory
