"""The send side of an endpoint: per-type packers and adaptive batching.

Theory of operation: every type this endpoint publishes has a
:class:`~ganglion.wire.Packer` that numbers its messages and packs them into
datagrams. Latency must not grow when traffic is light, yet under load small
messages should share datagrams. So:

* When the sender is *idle* (nothing sent yet in this loop iteration), a
  published message is sent at once, alone in its datagram.
* After that lone send the sender yields the CPU (``sched_yield``). A subscriber
  on the same host (multicast loop) was just woken by the datagram, and Linux
  tends to queue a wakee on the waker's CPU; without the yield it waits there
  until this process is done with the rest of its loop iteration, tens of
  microseconds of cold Python at light traffic. Measured with two processes at
  1,000 msg/s: p50 one-way latency 136-149 us without, 72-125 us with. The yield
  costs one system call when nothing else is runnable, and happens at most once
  per loop iteration (the next message of the iteration is batched).
* That first send marks the endpoint *busy* and schedules a flush with
  ``loop.call_soon``: every further message published before the loop's next
  iteration (in a burst from one coroutine, or from several callbacks handled in
  the same iteration) waits in its type's packer, which sends a full datagram
  whenever the next message would not fit.
* A datagram leaves as soon as the next message like the last one (as large)
  would not fit, and a message larger than half the room never waits: nothing
  could join it, so waiting would only add latency and a copy.
* Where the send socket has UDP segmentation offload (``send_many``), datagrams
  made while busy wait in a per-type *train* instead of leaving one system call
  each, and the train leaves at the end of the iteration (or when it holds as
  much as one segmented send can carry) in one ``sendmsg`` per run of
  equal-size datagrams. That is what lets a stream of large messages, which
  cannot share datagrams, still share system calls; receivers get ordinary
  datagrams. Light traffic never waits for a train: the idle path sends at once.
* The flush sends what is left. If anything was published since the previous
  flush, the endpoint stays busy for one more iteration, so a sustained stream
  keeps batching instead of sending the first message of every iteration alone;
  an iteration with nothing published makes it idle again.

Sans I/O: the sockets are reached through the ``send``, ``send_many`` and
``count_sent`` callables given, and the end of a loop iteration through the
``loop``'s ``call_soon`` (any object with one), so this module imports neither
``asyncio`` nor ``socket`` and its tests drive it with fakes.

With a network key, each packer signs (MAC-only) or encrypts its datagrams as the
:class:`~ganglion.wire.KeyRing` says: encrypting packers get a sealer for their type,
under the endpoint's random *session* (docs/protocol.md section 5.2).
:meth:`Outgoing.set_keys` switches every packer to another ring (a key rotation)
after sending what waits, so no datagram mixes keys.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

from ganglion.defaults import GSO_MAX_BYTES, GSO_MAX_SEGMENTS, MAX_DATAGRAM
from ganglion.wire import KeyRing, Packer, as_keyring
from ganglion.wire._packer import FULL, HEAD_MAX
from ganglion.wire.keys import SESSION_SIZE

#: Called after a message left alone while idle: give the CPU to whoever our
#: datagram just woke (see the module docstring); None where there is no such call.
YIELD_CPU = getattr(os, "sched_yield", None)
#: Sends one datagram of a type; returns whether the kernel took it.
SendFn = Callable[[bytes, str], bool]
#: Sends several datagrams of a type in order, in as few system calls as it can.
SendManyFn = Callable[[list[bytes], str], object]


class Cancellable(Protocol):
    """A scheduled call (asyncio's ``Handle``)."""

    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """What runs the flush at the end of a loop iteration (an asyncio event loop)."""

    def call_soon(self, callback: Callable[[], object], /) -> Cancellable: ...


class Outgoing:
    """Packers for every published type plus the adaptive flush."""

    def __init__(
        self,
        *,
        node_id: bytes,
        boot: int,
        key: bytes | KeyRing | None,
        max_datagram: int = MAX_DATAGRAM,
        send: SendFn,
        loop: Scheduler,
        replayed: bool = False,
        after_idle_send: Callable[[], object] | None = YIELD_CPU,
        send_many: SendManyFn | None = None,
        session: bytes | None = None,
        count_sent: Callable[[int], object] | None = None,
    ) -> None:
        """Set up the send side.

        Args:
            node_id: this endpoint's node id.
            boot: its boot counter.
            key: the network key or key ring (None: datagrams in clear); a ring that
                encrypts needs ``cryptography``.
            max_datagram: the size budget of one datagram.
            send: sends one datagram of a type.
            loop: the event loop the flushes run on.
            replayed: flag every datagram as replayed from a log.
            after_idle_send: called after a message left alone while idle.
            send_many: sends several datagrams of a type at once (UDP GSO), or None.
            session: the encryption session (8 bytes); random when None.
            count_sent: told the length of each datagram the compiled send lane
                sent itself (:meth:`lane_done`), for the sender's counters.

        Raises:
            ConfigError: the ring encrypts and ``cryptography`` is missing.
        """
        self._node_id = node_id
        self._replayed = replayed
        self._boot = boot
        self._ring = as_keyring(key)
        if self._ring is not None and self._ring.encrypt:
            self._ring.require_aead()
        self._session = os.urandom(SESSION_SIZE) if session is None else session
        self._max_datagram = max_datagram
        self._send = send
        self._count_sent = count_sent
        self._loop = loop
        self._packers: dict[str, Packer] = {}
        self._dirty: dict[str, Packer] = {}
        #: Whether this loop iteration already sent a message (then later ones batch).
        #: Read by the compiled send lane (``SendLane``) to choose alone or batched.
        self.busy = False
        self._clock_synced = True
        self._flush_handle: Cancellable | None = None
        self._after_idle_send = after_idle_send
        # The after-send hook the compiled lane cannot run itself (it only yields).
        self._after_lane_send = None if self.yields_cpu else after_idle_send
        self._send_many = send_many
        # Datagrams made while busy, per type, when they leave in trains (send_many).
        self._trains: dict[str, list[bytes]] | None = None if send_many is None else {}
        self._train_cap = max(1, min(GSO_MAX_SEGMENTS, GSO_MAX_BYTES // max_datagram))
        #: Messages added so far (by :meth:`add`, or by the compiled lane: :meth:`lane_done`).
        self.messages = 0
        self.datagrams = 0
        self._mark = 0  # ``messages`` when the load was last looked at
        self._burst = False  # this busy iteration began with hold(): no load follows it

    def packer(self, type_name: str, fingerprint: bytes) -> Packer:
        """The packer of ``type_name``, created on first use.

        Raises:
            ConfigError: ``max_datagram`` leaves no room for a message of this type.
        """
        packer = self._packers.get(type_name)
        if packer is None:
            packer = Packer(node_id=self._node_id, type_name=type_name, fingerprint=fingerprint,
                            replayed=self._replayed, boot=self._boot,
                            max_datagram=self._max_datagram)
            if self._ring is not None:
                self._rekey(packer)
            if not self._clock_synced:
                packer.set_clock_synced(False)
            self._packers[type_name] = packer
        return packer

    def _rekey(self, packer: Packer) -> None:
        """Make ``packer`` sign or encrypt as the ring says (it holds no message)."""
        ring = self._ring
        if ring is None:
            packer.rekey()
        elif ring.encrypt:
            packer.rekey(sealer=ring.sealer(self._node_id, self._session, packer.type_name))
        else:
            packer.rekey(key=ring.sending)

    def set_keys(self, key: bytes | KeyRing | None) -> None:
        """Sign or encrypt everything sent from now on with another key ring.

        What waits in the packers and trains leaves first, under the old keys.

        Raises:
            ConfigError: the new ring encrypts and ``cryptography`` is missing, or the
                budget leaves no room for a message of some type with the new overhead.
        """
        ring = as_keyring(key)
        if ring is not None and ring.encrypt:
            ring.require_aead()
        self.flush()
        self._ring = ring
        for packer in self._packers.values():
            if packer.count:  # left over while idle: out now, under the old keys
                self.datagrams += 1
                self._send(packer.build(), packer.type_name)
            self._rekey(packer)

    def add(self, packer: Packer, payload: bytes, ts_ns: int, seq: int | None = None) -> None:
        """Queue one encoded message (already checked to fit) and send as the policy says.

        The one way a message is handed to the send side in Python (the compiled
        lane's :meth:`lane_done` accounts the messages it handled itself).

        Args:
            packer: its type's packer (:meth:`packer`).
            payload: the encoded message.
            ts_ns: its timestamp.
            seq: the number it was given at publish; when the packer's numbering is
                behind (numbers taken that were never sent: nobody else listened, or
                the hold queue dropped them), what the packer holds leaves first and
                its numbering continues at ``seq`` (a gap receivers see).
        """
        if seq is not None and packer.next_seq != seq:
            self.skip_to(packer, seq)
        self.messages += 1
        if self.busy:
            if packer.count:
                added = packer.add(payload, ts_ns)
                if added:
                    if added == FULL:
                        self.emit(packer)  # the next message like this one would not fit
                    return
                self.emit(packer)
            if len(payload) + HEAD_MAX > packer.limit >> 1:
                # No second message like this one fits beside it: waiting for one gains nothing.
                self.datagrams += 1
                if self._trains is None:
                    self._send(packer.build_one(payload, ts_ns), packer.type_name)
                else:
                    self._board(packer.type_name, packer.build_one(payload, ts_ns))
                return
            packer.add(payload, ts_ns)
            self._dirty[packer.type_name] = packer
            return
        if packer.count:
            # Idle with messages left over (numbering skipped meanwhile): all leave now.
            if not packer.add(payload, ts_ns):
                self.emit(packer)
                packer.add(payload, ts_ns)
            self.emit(packer)
        else:
            # Idle: the message leaves at once, alone (the latency path, kept short).
            self.datagrams += 1
            self._send(packer.build_one(payload, ts_ns), packer.type_name)
            if self._after_idle_send is not None:
                self._after_idle_send()
        self._went_busy()

    @property
    def yields_cpu(self) -> bool:
        """True when a lone send is followed by :data:`YIELD_CPU` (``sched_yield``)."""
        return self._after_idle_send is YIELD_CPU and YIELD_CPU is not None

    def lane_done(self, packer: Packer, sent: int, full: bool) -> None:
        """Account a message the compiled send lane (a route's ``SendLane``) handled.

        Args:
            packer: its type's packer.
            sent: the length of the datagram the lane sent alone while idle, or 0
                when it added the message to ``packer``'s open datagram.
            full: for an added message, whether another as large would not fit (what
                :meth:`Packer.add <ganglion.wire.Packer.add>` answers as ``FULL``).
        """
        self.messages += 1
        if sent:
            # What add() does after its own lone send. The lane yielded the CPU right
            # after its send when yields_cpu; any other after-send hook runs here.
            self.datagrams += 1
            if self._count_sent is not None:
                self._count_sent(sent)
            if self._after_lane_send is not None:
                self._after_lane_send()
            self._went_busy()
        elif full:
            self.emit(packer)

    def hold(self) -> None:
        """Let every message of this loop iteration wait for its end, as after a lone send,
        and leave then in one flush with no yield of the CPU between them.

        For a burst the sender makes on purpose and nobody waits for (the control
        channel's heartbeat tick: its ``Heartbeat`` and the consensus ``Status``), so
        that receivers get its datagrams together, in one wake-up. Being a burst, it
        says nothing of load to come: once it has left, the next message leaves at once
        again (no further iteration is spent batching, which would cost an idle node one
        more turn of the loop per heartbeat).
        """
        if not self.busy:
            self._went_busy()
            self._burst = True

    def _went_busy(self) -> None:
        """A message left while idle: batch what follows in this loop iteration."""
        self._mark = self.messages
        self.busy = True
        self._schedule()

    def skip_to(self, packer: Packer, seq: int) -> None:
        """Send what ``packer`` holds, then continue its numbering at ``seq`` (a gap)."""
        if packer.count:
            self.emit(packer)
        packer.skip_to(seq)

    def set_clock_synced(self, synced: bool) -> None:
        """Flag the datagrams of every type (from the next one on) as clock-(un)synchronised."""
        self._clock_synced = synced
        for packer in self._packers.values():
            packer.set_clock_synced(synced)

    def flush(self) -> None:
        """Send every queued message now."""
        for packer in self._dirty.values():
            if packer.count:
                self.emit(packer)
        self._dirty.clear()
        trains = self._trains
        if trains:
            send_many = self._send_many
            assert send_many is not None
            for type_name, train in trains.items():
                send_many(train, type_name)
            trains.clear()

    def close(self) -> None:
        """Flush and stop scheduling."""
        self.flush()
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self.busy = False
        self._burst = False

    def _schedule(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._on_iteration_end)

    def _on_iteration_end(self) -> None:
        self._flush_handle = None
        # Messages published since the last look: datagrams that filled up left
        # already, so what the flush finds does not tell whether load goes on.
        had_work = self.messages != self._mark and not self._burst
        self._burst = False
        self._mark = self.messages
        self.flush()
        if had_work:
            self._schedule()  # still under load: keep batching one more iteration
        else:
            self.busy = False

    def emit(self, packer: Packer) -> None:
        """Build what ``packer`` holds and send it (onto its train while busy)."""
        self.datagrams += 1
        if self.busy and self._trains is not None:
            self._board(packer.type_name, packer.build())
        else:
            self._send(packer.build(), packer.type_name)

    def _board(self, type_name: str, datagram: bytes) -> None:
        """Put a datagram on its type's train; a train as long as one send carries leaves."""
        trains = self._trains
        assert trains is not None and self._send_many is not None
        train = trains.get(type_name)
        if train is None:
            trains[type_name] = [datagram]
        else:
            train.append(datagram)
            if len(train) >= self._train_cap:
                del trains[type_name]
                self._send_many(train, type_name)
