"""Each reach into dulwich's internals (hotreload/git/compat.py) still finds what it
relies on; each test names the reach, so a dulwich upgrade that moves it fails here,
loudly, rather than in a fetch or push (tests/test_network.py and test_reconcile.py
drive both reaches over real transports)."""

from __future__ import annotations

import inspect

from dulwich.client import GitClient, TCPGitClient

from hotreload.git.compat import TimedTCPGitClient, heed_no_thin


def test_reach_1_receive_pack_negotiation_is_where_no_thin_is_read() -> None:
    params = list(inspect.signature(GitClient._negotiate_receive_pack_capabilities).parameters)
    assert params == ["self", "server_capabilities"], f"reach 1 (heed_no_thin): dulwich changed it: {params}"
    client = TCPGitClient("127.0.0.1")
    said = heed_no_thin(client)
    negotiated = client._negotiate_receive_pack_capabilities({b"report-status", b"no-thin", b"ofs-delta"})
    assert said() is True and isinstance(negotiated, tuple) and b"report-status" in negotiated[0]


def test_reach_2_the_tcp_clients_connect_and_what_it_reads() -> None:
    params = list(inspect.signature(TCPGitClient._connect).parameters)
    assert params == ["self", "cmd", "path", "protocol_version"], f"reach 2 (TimedTCPGitClient): {params}"
    client = TimedTCPGitClient("git.example.org", 9418)
    for name in ("_host", "_port", "_remote_path_encoding", "_report_activity"):
        assert hasattr(client, name), f"reach 2 (TimedTCPGitClient): TCPGitClient has no {name} any more"
    assert "timeout" not in inspect.signature(TCPGitClient.__init__).parameters, (
        "dulwich's TCPGitClient takes a timeout now: pass it and retire compat.TimedTCPGitClient")
