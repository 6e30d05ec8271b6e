"""Build a knowledge-base shard's search indexes: ``python -m storage.kb_edge_build PATH``.

Run by :meth:`storage.kb_edge.EdgeIndex.optimize` in a child process, on a
copy of a bot's shard: the engine's optimizer holds the GIL throughout, so
run in the server's process it would stop the event loop. The child runs at
a lower priority than the server.
"""

from __future__ import annotations

import os
import sys

from qdrant_edge import EdgeShard


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m storage.kb_edge_build SHARD_PATH", file=sys.stderr)
        return 2
    os.nice(10)
    shard = EdgeShard.load(argv[0])
    try:
        shard.optimize()
        shard.flush()
    finally:
        shard.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
