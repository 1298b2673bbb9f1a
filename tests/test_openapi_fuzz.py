"""The OpenAPI document as a contract, fuzzed: schemathesis generates valid and
invalid input for every documented operation against a live server on a small
corpus (writes authenticated) and checks every answer: no 5xx but the documented 503
(a read whose X-Data-Min-Commit this server does not hold, which the fuzzer generates),
and each status, content type, header and body as the document says. Bounded to about
a minute."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from simulator.server import ServerProcess
from tests.conftest import WRITE_TOKEN, World


@pytest.mark.slow
def test_schemathesis_finds_no_5xx_and_no_answer_that_breaks_the_document(world: World, tmp_path: Path) -> None:
    schemathesis = shutil.which("schemathesis") or str(Path(os.sys.executable).parent / "schemathesis")
    config = tmp_path / "schemathesis.toml"
    # 503 is documented (and checked against the document by the other checks); 500 and 502 still fail
    # a schema-valid If-Match or If-None-Match: * that does not hold is a 412, as the document says
    config.write_text('[checks.not_a_server_error]\nexpected-statuses = ["2xx", "3xx", "4xx", "503"]\n'
                      '[checks.positive_data_acceptance]\n'
                      'expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]\n'
                      # preconditions are judged before the content (RFC 9110 13.2.1): a stale one with a bad body is 412;
                      # a field past its documented maxLength (overview: 50,000) can make the body exceed 256 KiB: 413
                      '[checks.negative_data_rejection]\nexpected-statuses = ["400", "401", "403", "404", "405", '
                      '"406", "409", "412", "413", "415", "422", "428", "429", "5xx"]\n')
    with ServerProcess(world.env(CFP_AUTH_FAILURES_PER_MINUTE="0", CFP_DATA_MIN_COMMIT_WAIT_SECONDS="0.2")) as server:
        result = subprocess.run(
            [schemathesis, "--config-file", str(config), "run", f"{server.base}/api/openapi.json",
             "--checks", "all", "--max-examples", "25", "--max-time", "50", "--workers", "2",
             "--header", f"Authorization: Bearer {WRITE_TOKEN}", "--seed", "1",
             "--phases", "examples,coverage,fuzzing", "--request-timeout", "10",
             "--generation-database", "none", "--exclude-checks", "ignored_auth",
             "--exclude-operation-id", "getEvents"],  # a stream never ends: tests/test_downstream.py
            capture_output=True, text=True, timeout=240, cwd=tmp_path,
            env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"})
        report = result.stdout[-6000:] + result.stderr[-2000:]
        assert result.returncode == 0, report
        assert "No issues found" in result.stdout or " passed" in result.stdout, report
