"""BLAKE2b without loading OpenSSL (as ``ganglion/_blake2.py``, which consensus may not import).

``hashlib.blake2b`` is CPython's builtin ``_blake2.blake2b``; ``import hashlib`` would
also load OpenSSL's libcrypto (about 4 MB resident) into every node.
"""

from __future__ import annotations

try:
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - an interpreter without the builtin module
    from hashlib import blake2b

__all__ = ["blake2b"]
