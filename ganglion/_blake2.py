"""BLAKE2b without loading OpenSSL.

``hashlib.blake2b`` is CPython's own ``_blake2.blake2b`` (hashlib never hands BLAKE2
to OpenSSL), but ``import hashlib`` (and ``hmac``, and ``secrets``, which imports
``hmac``) also loads and initialises OpenSSL's libcrypto, about 4 MB resident in a
process that otherwise never needs it (an idle node on asyncio's loop: see
bench/node.py's RSS rows). Modules a node imports take BLAKE2b from here, random
bytes from ``os.urandom`` (what ``secrets.token_bytes`` returns) and constant-time
comparison from :func:`compare_digest`.
"""

from __future__ import annotations

try:
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - an interpreter without the builtin module
    from hashlib import blake2b

try:
    # What hmac.compare_digest is when OpenSSL is absent: the same constant-time compare.
    from _operator import _compare_digest as compare_digest
except ImportError:  # pragma: no cover
    from hmac import compare_digest  # type: ignore[no-redef]

__all__ = ["blake2b", "compare_digest"]
