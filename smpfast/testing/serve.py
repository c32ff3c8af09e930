"""``python -m smpfast.testing.serve DIR MAX_VERSION [WORKERS]``: ``smpfast start --dir DIR``,
offering versions up to MAX_VERSION instead of the announced range (for tests and benchmarks
of the versions smpfast speaks but does not announce yet, e.g. the proxy role's v8+), with
WORKERS worker processes (default: [TRANSPORT] workers)."""

import dataclasses
import sys

from smpfast.config import load_config
from smpfast.server.main import run

if __name__ == "__main__":
    config = load_config(sys.argv[1])
    if len(sys.argv) > 3:
        config = dataclasses.replace(config, transport=dataclasses.replace(config.transport, workers=int(sys.argv[3])))
    sys.exit(run(config, max_version=int(sys.argv[2])))
