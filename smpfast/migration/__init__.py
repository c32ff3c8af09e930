"""Migration between the reference server (smp-server) and smpfast: ``smpfast import`` and
``smpfast export``. The file formats are in :mod:`smpfast.store.reference_log`; the
reference's replay semantics in :mod:`.replay`; the files and directories in :mod:`.reference`.
"""
