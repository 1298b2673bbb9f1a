"""A running server's memory around a fetch it must refuse (issue 32, decision 79): the
remote, served by ``git daemon`` on loopback, gains a commit with a 200 MB blob (200 KB
deflated), or sends a delta of a few KB (deflated) that makes 1 GiB; one webhook each. Prints
the webhook's status and the process's RSS before and after, and its peak (VmHWM)::

    .venv/bin/python benchmarks/refused_fetch.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator.server import GitDaemon, ServerProcess
from tests.conftest import bearer, delta_bomb, entry, git, make_world, pack_of, project_toml


def memory_mb(server: ServerProcess, field: str) -> float:
    assert server.proc is not None
    lines = Path(f"/proc/{server.proc.pid}/status").read_text().splitlines()
    return int(next(line.split()[1] for line in lines if line.startswith(field + ":"))) / 1024


def run(case: str) -> None:
    world = make_world(Path(tempfile.mkdtemp(prefix=f"refused-{case}-")))
    origin = ["--git-dir", str(world.origin)]
    env: dict[str, str] = {}
    if case == "blob":
        blob = subprocess.run(f"head -c {200 << 20} /dev/zero | git --git-dir {world.origin} hash-object -w --stdin",
                              shell=True, check=True, capture_output=True, text=True).stdout.strip()
    else:  # the remote's upload-pack answers with a crafted pack (git's packObjectsHook)
        some_blob = git(*origin, "ls-tree", "published:projects").split()[2]
        size = int(git(*origin, "cat-file", "-s", some_blob))
        delta = delta_bomb(size)
        (world.root / "bomb.pack").write_bytes(pack_of(entry(7, len(delta), delta, bytes.fromhex(some_blob))))
        hook = world.root / "hook"
        hook.write_text(f"#!/bin/sh\ncat >/dev/null\ncat {world.root / 'bomb.pack'}\n")
        hook.chmod(0o755)
        env = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "uploadpack.packObjectsHook",
               "GIT_CONFIG_VALUE_0": str(hook)}
    daemon = GitDaemon(world.root, env=env)
    try:
        with ServerProcess(world.env(CFP_DATA_REMOTE=daemon.url("origin.git"))) as server:
            before = memory_mb(server, "VmRSS")
            if case == "blob":
                listing = git(*origin, "ls-tree", "published") + f"\n100644 blob {blob}\tbig.bin\n"
                tree = subprocess.run(["git", *origin, "mktree"], input=listing, check=True, capture_output=True,
                                      text=True).stdout.strip()
                git(*origin, "update-ref", "refs/heads/published", git(*origin, "commit-tree", tree, "-p", "published",
                                                                       "-m", "a 200 MB blob"))
            else:
                world.commit_upstream({"projects/up.toml": project_toml("up", "Up")})
            status = server.request("POST", "/api/_internal/reload-data", {}, bearer()).status
            print(f"{case:5s}: webhook {status}; RSS {before:.0f} MB before, {memory_mb(server, 'VmRSS'):.0f} MB "
                  f"after, peak {memory_mb(server, 'VmHWM'):.0f} MB", flush=True)
    finally:
        daemon.stop()


if __name__ == "__main__":
    for case in ("blob", "delta"):
        run(case)
