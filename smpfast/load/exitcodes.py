"""The exit codes of ``smpfast load`` (also in its --help and docs/load.md)."""

OK = 0  # the run completed and every threshold given was met
USAGE_OR_SETUP = 1  # bad options, or the run could not start (connect, handshake, queue set-up)
THRESHOLD = 2  # the run completed but a threshold (--max-p99, --min-throughput, --max-errors) was breached
RUN_FAILED = 3  # the run cannot be trusted: it ended early, lost connections or messages (see failures.py)
INTERRUPTED = 130  # Ctrl-C / SIGINT (a partial report is still written)

HELP = """exit codes:
  0    the run completed and every threshold given was met
  1    usage error, or the run could not be set up (connect, handshake, queue creation)
  2    a threshold was breached (--max-p99, --min-throughput, --max-errors)
  3    the run failed: it ended early, lost connections or lost messages (the JSON's
       "failures" say which); --allow-errors reports these but does not fail on them
  130  interrupted (Ctrl-C / SIGINT): the partial report is still printed and written"""
