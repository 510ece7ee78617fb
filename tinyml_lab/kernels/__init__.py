"""Kernels: ``reference`` (NumPy, the spec), ``float32`` and ``int8`` (numba), and ``fixedpoint``
(the integer arithmetic of the TFLite int8 spec)."""
