"""Names mean one thing (docs/architecture.md, "Names"), checked over the source with ast.

* A public class name (no leading underscore) is defined once across ``consensus``,
  ``ganglion`` and ``hardware``: two classes called ``PeerInfo`` or ``Envelope`` made a
  reader ask which one a line meant.
* The async lifecycle is ``start()`` / ``close()`` (``async def`` where closing awaits
  something); no ``async_close``-style twin, except deprecated aliases that warn.
"""

from __future__ import annotations

import ast
import collections
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("consensus", "ganglion", "hardware")

#: Names defined twice on purpose: the same thing where the two may not import each other.
SAME_THING = {
    # a Unix account (name, uid, groups): the CLI's service checks and the hardware
    # survey each need one; hardware may use only ganglion's public API, and ganglion
    # never imports hardware.
    "Account",
}
#: Lifecycle method names the project does not use (it uses start/close).
TWIN_NAMES = frozenset({"async_close", "async_start", "async_stop", "aclose"})


def public_classes(root: Path, folders: tuple[str, ...]) -> dict[str, list[str]]:
    """Module-level public class name -> where it is defined."""
    found: dict[str, list[str]] = collections.defaultdict(list)
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                    found[node.name].append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def lifecycle_twins(root: Path, folders: tuple[str, ...]) -> list[str]:
    """Methods named like an ``async_`` lifecycle twin that are not deprecated aliases."""
    bad = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.ClassDef):
                    continue
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) \
                            and item.name in TWIN_NAMES and not _warns_deprecated(item):
                        bad.append(f"{path.relative_to(root)}:{item.lineno}: "
                                   f"{node.name}.{item.name}")
    return bad


def _warns_deprecated(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "DeprecationWarning" for n in ast.walk(func))


def test_each_public_class_name_is_defined_once() -> None:
    twice = {name: where for name, where in public_classes(ROOT, PACKAGES).items()
             if len(where) > 1 and name not in SAME_THING}
    assert not twice, "one name, two classes:\n" + "\n".join(
        f"{name}: {', '.join(where)}" for name, where in sorted(twice.items()))


def test_the_async_lifecycle_is_start_and_close() -> None:
    bad = lifecycle_twins(ROOT, PACKAGES)
    assert not bad, "use close()/start(), or make it a deprecated alias:\n" + "\n".join(bad)


@pytest.mark.parametrize("cls", ["MulticastReceiver", "MulticastSender"])
def test_the_deprecated_async_close_warns_and_closes(cls: str) -> None:
    import asyncio

    from ganglion.runtime.transport import MulticastReceiver, MulticastSender

    async def body() -> bool:
        obj: MulticastReceiver | MulticastSender
        if cls == "MulticastReceiver":
            obj = MulticastReceiver("127.0.0.1", 47999, lambda *a: None)
        else:
            obj = MulticastSender("127.0.0.1")
        with pytest.warns(DeprecationWarning, match=rf"{cls}\.async_close\(\) is deprecated"):
            await obj.async_close()
        return obj.closed

    assert asyncio.run(asyncio.wait_for(body(), 10))


# -- the checks find what they look for --------------------------------------------------


def test_the_checks_report_what_they_look_for(tmp_path: Path) -> None:
    (tmp_path / "ganglion").mkdir()
    (tmp_path / "ganglion" / "a.py").write_text(textwrap.dedent("""
        class PeerInfo: ...
        class _Private: ...
        class Thing:
            async def async_close(self) -> None: ...
            async def close(self) -> None: ...
        class Old:
            async def async_close(self) -> None:
                warnings.warn("x", DeprecationWarning)
    """))
    (tmp_path / "ganglion" / "b.py").write_text("class PeerInfo: ...\nclass _Private: ...\n")
    classes = public_classes(tmp_path, ("ganglion",))
    assert classes["PeerInfo"] == ["ganglion/a.py:2", "ganglion/b.py:1"]
    assert "_Private" not in classes
    assert lifecycle_twins(tmp_path, ("ganglion",)) == ["ganglion/a.py:5: Thing.async_close"]
