"""smpfast: a SimpleX Messaging Protocol (SMP) relay server with a Cython core."""

__version__ = "0.1.0"
