"""Internal plugins: finding them by entry point, and running them under supervision.

Theory of operation: an internal plugin is a Python object on the node's event
loop (see :class:`Plugin`). :func:`load_plugins` finds each enabled one by name in
the ``ganglion.plugins`` entry-point group and calls the entry point with the
plugin's settings (its ``[plugin.<name>]`` table) as keyword arguments.

:class:`PluginHost` runs them in two phases:

1. **The start barrier.** :meth:`PluginHost.start` awaits every plugin's
   ``setup(node)``, in order, before *any* plugin's ``run`` starts. Plugins
   subscribe in ``setup``, so when the first ``run`` publishes its first message
   every subscription is already in place and no plugin misses another's first
   messages (local delivery is synchronous, so "in place" is enough).
2. **Supervision.** Each plugin's ``run(node)`` gets its own task. When it
   raises, the traceback is logged, the crash is counted, and ``run`` is called
   again after a backoff that doubles from :attr:`RestartPolicy.initial` up to
   :attr:`RestartPolicy.maximum`; a run that lasted :attr:`RestartPolicy.reset_after`
   seconds counts as healthy and the backoff starts over. A ``setup`` that fails
   or hangs is logged the same way and retried in the plugin's own task, so one
   broken plugin neither holds back the barrier for long nor stops the others. A
   ``run`` that returns is finished and not restarted. Nothing a plugin raises
   (an ``Exception``) leaves its task, so a crash never takes the node down.

Time is injected (``clock``, ``sleep``) so tests drive the backoff without waiting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

import asyncio
import dataclasses
import enum
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Protocol, runtime_checkable

from ganglion.errors import ConfigError, LocalError, PluginNotFoundError
from ganglion.types import type_of, validate_type_name
from ganglion.wallgrid import next_multiple

__all__ = [
    "ENTRY_POINT_GROUP",
    "TYPES_ENTRY_POINT_GROUP",
    "Plugin",
    "PluginHost",
    "PluginState",
    "PluginStats",
    "RestartPolicy",
    "installed_plugins",
    "load_installed_types",
    "load_plugin",
    "load_plugins",
    "until_aligned",
]

_log = logging.getLogger(__name__)

#: The entry-point group internal plugins register under.
ENTRY_POINT_GROUP: Final = "ganglion.plugins"
#: The entry-point group naming modules that register message types when imported.
TYPES_ENTRY_POINT_GROUP: Final = "ganglion.types"


@runtime_checkable
class Plugin(Protocol):
    """What the host needs from an internal plugin.

    A plugin may also define ``async def setup(self, node) -> None``, called once
    before any plugin runs: make its subscriptions there. ``run`` may be called
    again after a crash, so keep per-run state local to it; the ``node`` passed in
    offers ``name``, ``node_id``, ``await publish(msg)`` and
    ``subscribe(type_or_name, callback=None)``.

    Attributes:
        name: the plugin's name in logs and stats; unique within one host.
        publishes: message classes or type names it publishes.
        subscribes: message classes or type names it subscribes to.
    """

    @property
    def name(self) -> str: ...

    @property
    def publishes(self) -> tuple[type | str, ...]: ...

    @property
    def subscribes(self) -> tuple[type | str, ...]: ...

    async def run(self, node: Any) -> None:
        """Do the plugin's work until cancelled (or return when there is nothing left)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RestartPolicy:
    """How long to wait before restarting a crashed plugin.

    Attributes:
        initial: seconds before the first restart.
        factor: each further restart waits this many times longer...
        maximum: ...but never longer than this.
        reset_after: a run that lasted this long was healthy: the next crash waits
            ``initial`` again.
    """

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0
    reset_after: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum or self.factor < 1 or self.reset_after < 0:
            raise LocalError(f"{self}: need 0 < initial <= maximum, factor >= 1, reset_after >= 0")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before restart number ``attempt`` (0-based) of a crash streak."""
        return min(self.maximum, self.initial * self.factor ** min(attempt, 64))


class PluginState(enum.Enum):
    """Where a plugin is in its life."""

    PENDING = "pending"  # host not started yet
    SETTING_UP = "setting-up"
    RUNNING = "running"
    BACKOFF = "backoff"  # crashed; waiting to restart
    FINISHED = "finished"  # run() returned
    STOPPED = "stopped"


@dataclasses.dataclass(frozen=True, slots=True)
class PluginStats:
    """A snapshot of one plugin's supervision.

    Attributes:
        name: the plugin's name.
        state: where it is now.
        restarts: how many times setup or run was attempted again after a failure.
        crashes: how many times setup or run raised (or setup timed out).
        last_error: ``"ExceptionType: message"`` of the latest failure, if any.
        last_error_at: the host clock's time of that failure.
    """

    name: str
    state: PluginState
    restarts: int
    crashes: int
    last_error: str | None
    last_error_at: float | None


class PluginHost:
    """Runs internal plugins on the node's event loop: start barrier, restarts, stop.

    Args:
        node: what plugins get as ``node`` (the :class:`ganglion.Node`).
        plugins: the plugins, in start order.
        policy: the restart backoff.
        setup_timeout: seconds a ``setup`` may take before it counts as failed.
        clock: monotonic seconds; for the backoff reset.
        sleep: awaited for each backoff delay.

    Raises:
        LocalError: a plugin lacks ``name`` or an async ``run``, declares a type that
            is neither a registered class nor a valid type name, or two share a name.
    """

    def __init__(
        self,
        node: Any,
        plugins: Iterable[Plugin],
        *,
        policy: RestartPolicy | None = None,
        setup_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._node = node
        self._policy = policy or RestartPolicy()
        self._setup_timeout = setup_timeout
        self._clock = clock
        self._sleep = sleep
        self._slots: dict[str, _Slot] = {}
        for plugin in plugins:
            _check_plugin(plugin)
            if plugin.name in self._slots:
                raise LocalError(f"two plugins are named {plugin.name!r}; names must be unique")
            self._slots[plugin.name] = _Slot(plugin)
        self._started = False

    async def start(self) -> None:
        """Set up every plugin, then start every plugin's ``run`` in its own task.

        Returns once every ``setup`` has finished, failed or timed out, and every
        task is created. A failed ``setup`` is logged and retried in its plugin's
        task; it never fails the start.

        Raises:
            LocalError: the host was already started.
        """
        if self._started:
            raise LocalError("the plugin host is already started")
        self._started = True
        for slot in self._slots.values():  # the barrier: all of these before any run
            await self._setup(slot)
        for slot in self._slots.values():
            slot.task = asyncio.create_task(self._supervise(slot), name=f"plugin {slot.name}")

    async def stop(self, timeout: float = 5.0) -> None:
        """Cancel every plugin and wait for them to end.

        Args:
            timeout: seconds to wait in all; a plugin still running then (one that
                swallows cancellation) is logged and abandoned.
        """
        tasks = {slot.task: slot for slot in self._slots.values() if slot.task is not None}
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task, slot in tasks.items():
            if task in pending:
                _log.warning("plugin %r did not stop within %.1f s; abandoning it",
                             slot.name, timeout)
            elif slot.state is not PluginState.FINISHED:
                slot.state = PluginState.STOPPED

    async def __aenter__(self) -> PluginHost:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def stats(self) -> dict[str, PluginStats]:
        """Each plugin's :class:`PluginStats`, by name, in start order."""
        return {name: slot.snapshot() for name, slot in self._slots.items()}

    def details(self) -> dict[str, dict[str, Any]]:
        """What plugins say of themselves, for ``ganglion status``, by name.

        A plugin may define ``status() -> dict`` (JSON-able; a ``sensors`` list is
        shown as the node's sensors). One that has none is left out, and so is one
        whose ``status()`` raises (logged): a status request never fails for it.

        Returns:
            Plugin name -> a fresh copy of the dict its ``status()`` returned.
        """
        out: dict[str, dict[str, Any]] = {}
        for name, slot in self._slots.items():
            status = getattr(slot.plugin, "status", None)
            if not callable(status):
                continue
            try:
                detail = status()
            except Exception:
                _log.exception("plugin %r: status() failed", name)
                continue
            if isinstance(detail, dict):
                out[name] = dict(detail)
        return out

    def publishes(self) -> frozenset[str]:
        """The type names the plugins declare they publish."""
        return frozenset(_type_name(t) for s in self._slots.values() for t in s.plugin.publishes)

    def subscribes(self) -> frozenset[str]:
        """The type names the plugins declare they subscribe to."""
        return frozenset(_type_name(t) for s in self._slots.values() for t in s.plugin.subscribes)

    # -- supervision ---------------------------------------------------------------------

    async def _setup(self, slot: _Slot) -> None:
        setup = getattr(slot.plugin, "setup", None)
        if setup is None:
            slot.set_up = True
            return
        slot.state = PluginState.SETTING_UP
        try:
            await asyncio.wait_for(setup(self._node), self._setup_timeout)
        except Exception as exc:  # a plugin's failure is its own; the node carries on
            if isinstance(exc, TimeoutError):
                exc = TimeoutError(f"setup took longer than {self._setup_timeout} s")
            self._failed(slot, "setup", exc)
        else:
            slot.set_up = True

    async def _supervise(self, slot: _Slot) -> None:
        streak = 0
        while True:
            ran_for = 0.0
            if slot.set_up:
                slot.state = PluginState.RUNNING
                started = self._clock()
                try:
                    await slot.plugin.run(self._node)
                except Exception as exc:
                    ran_for = self._clock() - started
                    self._failed(slot, "run", exc)
                else:
                    slot.state = PluginState.FINISHED
                    _log.info("plugin %r finished", slot.name)
                    return
            if ran_for >= self._policy.reset_after:
                streak = 0
            delay = self._policy.delay(streak)
            streak += 1
            slot.state = PluginState.BACKOFF
            _log.info("restarting plugin %r in %.1f s", slot.name, delay)
            await self._sleep(delay)
            slot.restarts += 1
            if not slot.set_up:
                await self._setup(slot)

    def _failed(self, slot: _Slot, phase: str, exc: BaseException) -> None:
        slot.crashes += 1
        slot.last_error = f"{type(exc).__name__}: {exc}"
        slot.last_error_at = self._clock()
        _log.error("plugin %r failed in %s (failure %d): %s", slot.name, phase, slot.crashes,
                   slot.last_error, exc_info=exc)


# -- entry points ------------------------------------------------------------------------


def entry_points(*, group: str) -> Iterable[EntryPoint]:
    """``importlib.metadata.entry_points(group=...)``, imported when first asked for:
    importlib.metadata (with email, zipfile, csv) costs a node that runs no plugin
    about a megabyte."""
    from importlib.metadata import entry_points as find

    return find(group=group)


def installed_plugins() -> dict[str, EntryPoint]:
    """The plugins installed in this environment.

    Returns:
        Entry-point name -> entry point, from the ``ganglion.plugins`` group, sorted by name.
    """
    found = entry_points(group=ENTRY_POINT_GROUP)
    return {ep.name: ep for ep in sorted(found, key=lambda ep: ep.name)}


def load_installed_types() -> list[str]:
    """Import every module the ``ganglion.types`` entry points name, registering its types.

    Commands that show or check readings (``tail``, ``publish``, ``info``, ``demo``)
    call this so that the types installed packages define (the sensor readings of
    ``hardware``) decode to their classes, without ganglion importing any of those
    packages by name. A module that cannot be imported is logged and skipped: the
    command then shows its readings from their self-describing payloads.

    Returns:
        The modules imported, by entry-point value, in entry-point name order.
    """
    loaded = []
    found = entry_points(group=TYPES_ENTRY_POINT_GROUP)
    for entry in sorted(found, key=lambda ep: ep.name):
        try:
            entry.load()
        except Exception as exc:  # a broken package must not stop the command
            _log.warning("message types %r (%s) cannot be imported: %s",
                         entry.name, entry.value, exc)
            continue
        loaded.append(entry.value)
    return loaded


def load_plugin(name: str, settings: Mapping[str, Any] | None = None) -> Plugin:
    """Create the plugin an entry point names.

    Args:
        name: the entry-point name (``sim``).
        settings: keyword arguments for the entry point (the ``[plugin.<name>]`` table).

    Returns:
        The plugin object.

    Raises:
        PluginNotFoundError: no installed plugin has this name (the installed ones are listed).
        ConfigError: the plugin cannot be imported, does not take these settings
            (the ones it takes are listed), or refused them.
        LocalError: the entry point made something that is not a plugin.
    """
    installed = installed_plugins()
    entry = installed.get(name)
    if entry is None:
        have = ", ".join(installed) if installed else "none"
        raise PluginNotFoundError(f"no plugin named {name!r} is installed; installed plugins: {have}")
    try:
        factory = entry.load()
    except Exception as exc:
        raise ConfigError(f"plugin {name!r} ({entry.value}) cannot be imported: {exc}") from exc
    kwargs = dict(settings or {})
    try:
        signature: inspect.Signature | None = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None  # some callables have none; the call itself will tell
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            accepted = ", ".join(p.name for p in signature.parameters.values()
                                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)) or "none"
            raise ConfigError(f"[plugin.{name}]: {exc}; plugin {name!r} takes: {accepted}") from None
    try:
        plugin = factory(**kwargs)
    except Exception as exc:
        raise ConfigError(f"plugin {name!r} refused its settings: {exc}") from exc
    _check_plugin(plugin)
    return plugin  # type: ignore[no-any-return]


def load_plugins(specs: Mapping[str, Mapping[str, Any]] | Iterable[str]) -> list[Plugin]:
    """Create every enabled plugin, in order.

    Args:
        specs: plugin name -> settings (``NodeConfig.plugin_specs()``), or just names.

    Returns:
        The plugins, ready for :class:`PluginHost`.

    Raises:
        PluginNotFoundError, ConfigError, LocalError: as :func:`load_plugin`.
    """
    if isinstance(specs, Mapping):
        return [load_plugin(name, settings) for name, settings in specs.items()]
    return [load_plugin(name) for name in specs]


# -- periodic work -------------------------------------------------------------------------


def until_aligned(period: float) -> float:
    """Seconds from now to the next multiple of ``period`` on the wall clock that is at
    least half a period away, in the running loop's time.

    A plugin that polls every ``period`` seconds sleeps this long instead of ``period``:
    its polls then fall on the very loop times at which the node wakes for its own
    heartbeats (the wall clock's multiples of the heartbeat interval, 0.5 s by default;
    :mod:`ganglion.wallgrid`), when ``period`` is a multiple of that interval, and run in
    the same wake-up instead of adding one. Steady polling is ``period`` apart; the first
    sleep is between half a period and one and a half.

    Raises:
        RuntimeError: no event loop is running.
    """
    loop = asyncio.get_running_loop()
    now = loop.time()
    return next_multiple(loop, period, now + period / 2) - now


# -- helpers -------------------------------------------------------------------------------


class _Slot:
    """The host's mutable record of one plugin."""

    __slots__ = ("crashes", "last_error", "last_error_at", "plugin", "restarts", "set_up",
                 "state", "task")

    def __init__(self, plugin: Plugin) -> None:
        self.plugin = plugin
        self.state = PluginState.PENDING
        self.set_up = False
        self.restarts = 0
        self.crashes = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.plugin.name

    def snapshot(self) -> PluginStats:
        return PluginStats(self.name, self.state, self.restarts, self.crashes,
                           self.last_error, self.last_error_at)


def _check_plugin(plugin: object) -> None:
    """Refuse, with the reason, an object the host could not run."""
    name = getattr(plugin, "name", None)
    if not isinstance(name, str) or not name:
        raise LocalError(f"{plugin!r} is not a plugin: it needs a non-empty str `name`")
    for method in ("run", "setup"):
        func = getattr(plugin, method, None)
        if (func is not None or method == "run") and not inspect.iscoroutinefunction(func):
            raise LocalError(f"plugin {name!r}: `{method}` must be an `async def` method")
    for attr in ("publishes", "subscribes"):
        declared = getattr(plugin, attr, None)
        if not isinstance(declared, tuple | list):
            raise LocalError(f"plugin {name!r}: `{attr}` must be a tuple of types or type names")
        for entry in declared:
            try:
                _type_name(entry)
            except Exception as exc:
                raise LocalError(f"plugin {name!r}: {attr} entry {entry!r}: {exc}") from None


def _type_name(entry: type | str) -> str:
    return validate_type_name(entry) if isinstance(entry, str) else type_of(entry).name
