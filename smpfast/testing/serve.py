"""``python -m smpfast.testing.serve DIR MAX_VERSION``: ``smpfast start --dir DIR``, offering
versions up to MAX_VERSION instead of the announced range (for tests and benchmarks of the
versions smpfast speaks but does not announce yet, e.g. the proxy role's v8+)."""

import sys

from smpfast.config import load_config
from smpfast.server.main import run

if __name__ == "__main__":
    sys.exit(run(load_config(sys.argv[1]), max_version=int(sys.argv[2])))
