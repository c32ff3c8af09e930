"""Harnesses shared by the tests and the benchmarks, shipped with the product.

``process``: ``smpfast start`` in a child process (``ServerProcess``, ``init_data_dir``,
``free_port``). ``throwaway_certs``: throw-away CA + server certificate chains.
``crash``: the kill -9 durability harness (``python -m smpfast.testing.crash``) and
``ledger``, its record of what clients were told and the checks run over it.
"""
