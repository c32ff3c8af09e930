"""The SMP relay: command semantics (broker), group commit, connections, and the server process."""
