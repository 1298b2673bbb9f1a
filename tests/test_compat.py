"""Each reach into dulwich's internals (hotreload/git/compat.py) still finds what it
relies on; each test names the reach, so a dulwich upgrade that moves it fails here,
loudly, rather than in a fetch or push (tests/test_network.py and test_reconcile.py
drive both reaches over real transports)."""

from __future__ import annotations

import inspect

from dulwich.client import TCPGitClient
from dulwich.protocol import Protocol

from hotreload.git.compat import TimedTCPGitClient


def test_reach_2_the_tcp_clients_connect_and_what_it_reads() -> None:
    params = list(inspect.signature(TCPGitClient._connect).parameters)
    assert params == ["self", "cmd", "path", "protocol_version"], f"reach 2 (TimedTCPGitClient): {params}"
    client = TimedTCPGitClient("git.example.org", 9418)
    for name in ("_host", "_port", "_remote_path_encoding", "_report_activity"):
        assert hasattr(client, name), f"reach 2 (TimedTCPGitClient): TCPGitClient has no {name} any more"
    assert "timeout" not in inspect.signature(TCPGitClient.__init__).parameters, (
        "dulwich's TCPGitClient takes a timeout now: pass it and retire compat.TimedTCPGitClient")
    assert "shutdown_write" in inspect.signature(Protocol.__init__).parameters, (
        "reach 2 (TimedTCPGitClient): dulwich's Protocol takes no shutdown_write (dulwich < 1.2.12?)")
