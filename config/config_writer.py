"""Setting one row of a bot's ``config.csv`` in place (``botserver telegram set-webhook``).

Other rows, their order, blank separator rows and the header are kept as they
are; the row is matched as General Bots matches keys (case, spaces and
underscores aside) and added at the end when it is not there.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from pathlib import Path


def _normalize(key: str) -> str:
    return re.sub(r"[\s_-]+", "-", key.strip().lower())


def set_config_value(config_file: Path, key: str, value: str) -> None:
    """Write ``key,value`` into ``config_file``, replacing the row of that key."""
    text = config_file.read_text(encoding="utf-8") if config_file.exists() else "name,value\n"
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    for row in rows:
        if row and _normalize(row[0]) == _normalize(key):
            row[:] = [row[0], value]
            break
    else:
        rows.append([key, value])
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    config_file.parent.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed over: a reader never sees half a file.
    fd, temp = tempfile.mkstemp(dir=config_file.parent, prefix=".config.", suffix=".csv")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(out.getvalue())
        os.chmod(temp, 0o600)  # it now holds a secret
        os.replace(temp, config_file)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
