"""After the suite: nothing in clear in Temporal or in our logs.

Before the session's Temporal dev server stops, every workflow it ran is read back and scanned
(tests/support/secret_scan.py); at the end of the session the logs are scanned too: every line our code
logged in this process (a session log with the production log filter, see `session_log`) and the log files
of our API and worker processes under pytest's temporary folder. The stand-ins (localstripe, the eSIM Go
simulator, the SMTP server) play other companies and their logs are not ours. The session fails on any
finding. It also fails when a whole-suite run scanned no history or no log line, so it cannot pass by
having looked at nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from temporalio.client import Client

from tests.support.secret_scan import Finding, scan_events, scan_text
from ttelgo.observability import secure

OUR_PROCESS_LOGS = ("api", "worker")
SHOWN = 30


@dataclass
class Audit:
    ran: bool = False
    folder: Path | None = None  # where this session's logs are
    histories: int = 0
    log_files: int = 0
    log_lines: int = 0
    findings: list[Finding] = field(default_factory=list)


AUDIT = Audit()


async def scan_temporal(client: Client) -> None:
    """Every workflow execution on the server, its whole history."""
    AUDIT.ran = True
    limit = asyncio.Semaphore(8)

    async def scan(workflow_id: str, run_id: str | None) -> list[Finding]:
        async with limit:
            handle = client.get_workflow_handle(workflow_id, run_id=run_id)
            return scan_events(f"history {workflow_id}", [e async for e in handle.fetch_history_events()])

    executions = [(w.id, w.run_id) async for w in client.list_workflows()]
    for found in await asyncio.gather(*(scan(*execution) for execution in executions)):
        AUDIT.findings += found
    AUDIT.histories += len(executions)


def session_log(folder: Path) -> logging.Handler:
    """Everything logged in the test process, through the same filter as the API's and worker's handler."""
    AUDIT.folder = folder
    handler = secure(logging.FileHandler(folder / "session.log", encoding="utf-8"))
    handler.setLevel(logging.INFO)
    return handler


def scan_logs(folder: Path) -> None:
    paths = [folder / "session.log"] + [
        p for p in sorted(folder.rglob("*.log")) if p.name.startswith(OUR_PROCESS_LOGS)
    ]
    for path in (p for p in paths if p.is_file()):
        AUDIT.log_files += 1
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            AUDIT.log_lines += 1
            AUDIT.findings += scan_text(f"{path}:{number}", line)


def whole_suite(config: pytest.Config) -> bool:
    return (
        config.args_source is pytest.Config.ArgsSource.TESTPATHS
        and not config.option.keyword
        and not config.option.markexpr
    )


def report(session: pytest.Session) -> None:
    """Prints what was scanned and found; fails the session on a finding or on a vacuous whole-suite scan."""
    if not AUDIT.ran or AUDIT.folder is None:
        return
    scan_logs(AUDIT.folder)
    write = session.config.get_terminal_writer().line
    write("")
    write(
        f"secret audit: {AUDIT.histories} Temporal histories, {AUDIT.log_lines} log lines in "
        f"{AUDIT.log_files} files scanned; {len(AUDIT.findings)} secrets in clear"
    )
    for finding in AUDIT.findings[:SHOWN]:
        write(f"  {finding}", red=True)
    vacuous = whole_suite(session.config) and not (AUDIT.histories and AUDIT.log_lines)
    if vacuous:
        write("secret audit: nothing to scan in a whole-suite run; the audit would pass vacuously", red=True)
    if AUDIT.findings or vacuous:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
