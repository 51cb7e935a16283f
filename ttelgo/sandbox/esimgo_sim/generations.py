"""One number per simulator start, kept in a state folder, so identifiers never repeat across restarts.

The simulator keeps its orders and eSIMs in memory, and its identifiers come from a seed: without this,
every restart of `ttelgo dev` would issue the ICCIDs of the previous run again. Each start claims the next
generation (under a file lock, so two simulators sharing the folder never claim the same one) and writes
it into every ICCID and matching id (see `identifiers.py`). `POST /_sim/reset` claims the next one too,
since a reset forgets the eSIMs but the API's database keeps them.
"""

import fcntl
import json
import os
from pathlib import Path

STATE_FILE = "identifiers.json"


def claim_generation(state_dir: Path) -> int:
    """The next unused generation in `state_dir` (1 on first use), recorded before it is returned."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / STATE_FILE
    with (state_dir / f"{STATE_FILE}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            last = int(json.loads(path.read_text())["generation"]) if path.exists() else 0
        except (ValueError, KeyError, TypeError) as exc:
            raise RuntimeError(f"{path} is unreadable: it should hold the last generation used") from exc
        generation = last + 1
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"generation": generation}) + "\n")
        with tmp.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    return generation
