"""Import asyncio without ssl, and hand ssl to asyncio the moment anything imports it.

Why: ``import asyncio`` imports :mod:`ssl`, which loads OpenSSL's libssl and
libcrypto and initialises them: about 5 MB of the ~40 MB an idle ``ganglion node``
on asyncio's loop holds (bench/node.py, "RSS idle"), for TLS that a node never
uses. Plugins that do use it (an MQTT bridge over TLS, an HTTPS client) import ssl
themselves, and uvloop imports it at once.

How: asyncio's modules import ssl inside ``try``/``except ImportError`` and keep
``ssl = None`` when it is missing. :func:`import_asyncio_without_ssl` imports
asyncio while ``sys.modules["ssl"]`` is None (so that import fails), then removes
the block and puts a finder first on ``sys.meta_path`` that waits for the real
``import ssl``: once ssl has run, it sets asyncio's module-level ``ssl`` names
(and ``sslproto.SSLAgainErrors``) as asyncio's own import would have. Only the
``ganglion`` command does this, before anything imported asyncio; a program
that imports ganglion as a library is never touched. On an interpreter whose
asyncio does not look as expected, ssl is imported at once (nothing saved,
nothing broken). tests/cli/test_lazy_imports.py checks TLS through asyncio after
the real import.
"""

from __future__ import annotations

import importlib.machinery
import sys
from types import ModuleType
from typing import Any, cast

#: asyncio's modules that hold a module-level ``ssl`` (None when it was missing).
_USERS = ("asyncio.base_events", "asyncio.selector_events", "asyncio.sslproto")


def import_asyncio_without_ssl() -> bool:
    """Import asyncio with ssl deferred; True if ssl is now deferred.

    Does nothing (False) when asyncio or ssl is already imported.
    """
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return False
    sys.modules["ssl"] = None  # type: ignore[assignment]  # import ssl -> ImportError
    try:
        import asyncio
        import asyncio.sslproto  # noqa: F401
    finally:
        del sys.modules["ssl"]
    if not all(getattr(sys.modules.get(name), "ssl", 0) is None for name in _USERS):
        import ssl  # an asyncio unlike 3.11-3.13's: give it ssl now  # noqa: F401

        _give_asyncio(sys.modules["ssl"])
        return False
    sys.meta_path.insert(0, _SslFinder())
    return True


def _give_asyncio(ssl: ModuleType) -> None:
    """Set asyncio's ``ssl`` names as its own import would have set them."""
    for name in _USERS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "ssl", None) is None:
            module.ssl = ssl  # type: ignore[attr-defined]
    sslproto = sys.modules.get("asyncio.sslproto")
    if sslproto is not None and not hasattr(sslproto, "SSLAgainErrors"):
        sslproto.SSLAgainErrors = (ssl.SSLWantReadError,  # type: ignore[attr-defined]
                                   ssl.SSLSyscallError)


class _SslFinder:  # a meta path finder (importlib.abc would import importlib.resources)
    """Finds nothing itself: wraps the real ``ssl`` loader to call :func:`_give_asyncio`."""

    def find_spec(self, fullname: str, path: Any, target: ModuleType | None = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "ssl":
            return None
        sys.meta_path.remove(self)  # once: the real finders take it from here
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = cast(Any, _GiveAfter(spec.loader))
        return spec


class _GiveAfter:  # a loader
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._inner.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        _give_asyncio(module)
