"""Imported first by every Numba kernel module: Numba with edgebert's settings (``runtime/startup.py``).

Not done in the package's ``__init__``, so that the table modules (``isa.py``,
``cpu.py``) and the native library's loader import without Numba.
"""
from ..startup import import_numba

numba = import_numba()
