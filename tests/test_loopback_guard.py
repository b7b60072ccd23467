"""The suite's own guard: no test reaches an address outside loopback."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import _loopback_only


def test_guard_refuses_non_loopback_targets_and_allows_loopback() -> None:
    with pytest.raises(AssertionError, match="tests talk to loopback only"):
        _loopback_only(("192.0.2.1", 25))
    with pytest.raises(AssertionError, match="tests talk to loopback only"):
        _loopback_only(("10.255.255.53", 53))
    _loopback_only(("127.0.10.3", 25))
    _loopback_only(("::1", 53, 0, 0))


def test_guard_stops_a_real_connect_before_any_packet() -> None:
    with socket.socket() as sock, pytest.raises(AssertionError, match=r"192\.0\.2\.1"):
        sock.connect(("192.0.2.1", 25))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(AssertionError):
        sock.sendto(b"x", ("192.0.2.1", 53))
