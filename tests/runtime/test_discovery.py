"""Discovery over mDNS/DNS-SD: the TXT advert codec, and real zeroconf on loopback.

The codec tests (``build_txt``, ``parse_txt``, ``instance_label``, argument
checks) touch no network and always run.

The mDNS tests send to 224.0.0.251:5353, which python-zeroconf cannot be told to
keep on loopback except by binding it to 127.0.0.1 - and on the host namespace a
mistake would reach the real LAN. So they run only inside a private network
namespace (``GANGLION_TEST_NETNS`` set by the test command) or where every
non-loopback interface is down, and skip with the reason otherwise. A fresh
namespace with only ``lo`` up needs no multicast route for zeroconf (checked:
registration, browsing and goodbyes all work without ``224.0.0.0/4 dev lo``).
To run them by hand::

    ns=t$$; ip netns add $ns; ip netns exec $ns ip link set lo up
    ip netns exec $ns env GANGLION_TEST_NETNS=$ns \\
        .venv/bin/python -m pytest tests/runtime/test_discovery.py -q
    ip netns del $ns

Every wait is bounded (``_until``) and pytest-timeout caps each test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mdns_isolation import mdns_isolation_problem
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from ganglion import __version__
from ganglion.errors import ConfigError, DecodeError, InterfaceError, LocalError
from ganglion.runtime._advert import (
    MAX_TXT_BYTES,
    TYPES_BUDGET,
    AdvertError,
    IncompatibleAdvert,
    build_txt,
    instance_label,
    parse_txt,
)
from ganglion.runtime.discovery import (
    SERVICE_TYPE,
    AdvertisedPeer,
    Discovery,
    browse_once,
)

LO = "127.0.0.1"
ID_A = bytes.fromhex("a1a2a3a4a5a6a7a8")
ID_B = bytes.fromhex("b1b2b3b4b5b6b7b8")
ID_C = bytes.fromhex("c1c2c3c4c5c6c7c8")
REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- TXT codec


def _props(txt: dict[str, str]) -> tuple[dict[bytes, bytes | None], int]:
    """TXT pairs as zeroconf hands them to a browser, with the raw record size."""
    props: dict[bytes, bytes | None] = {k.encode(): v.encode() for k, v in txt.items()}
    return props, sum(2 + len(k) + len(v) for k, v in txt.items())


def _good_txt(**changes: str) -> dict[str, str]:
    txt = build_txt(node_id=ID_A, name="pi-kitchen", types=["brew.Temp"], role="member")
    txt.update(changes)
    return txt


def _strings(txt: dict[str, str]) -> list[bytes]:
    return [f"{k}={v}".encode() for k, v in txt.items()]


def test_build_txt_has_every_key_and_parses_back() -> None:
    txt = build_txt(
        node_id=ID_A, name="pi-kitchen", types=["brew.Temp", "brew.Flow"], role="observer"
    )
    assert txt == {
        "id": "a1a2a3a4a5a6a7a8",
        "name": "pi-kitchen",
        "version": __version__,
        "proto": "1",
        "role": "observer",
        "types": "brew.Flow,brew.Temp",
    }
    advert = parse_txt(*_props(txt))
    assert (advert.id, advert.name, advert.version, advert.role) == (
        ID_A, "pi-kitchen", __version__, "observer")
    assert advert.types == ("brew.Flow", "brew.Temp")
    assert advert.types_complete


def test_no_types_is_an_empty_types_key() -> None:
    txt = build_txt(node_id=ID_A, name="n", types=[], role="member")
    assert txt["types"] == ""
    assert parse_txt(*_props(txt)).types == ()


def test_many_types_split_over_numbered_keys_each_under_255_bytes() -> None:
    types = [f"plant.area{i:03d}.Temperature" for i in range(30)]  # ~29 bytes each
    txt = build_txt(node_id=ID_A, name="n", types=types, role="member")
    assert "types" not in txt and "types_more" not in txt
    keys = [k for k in txt if k.startswith("types")]
    assert keys == [f"types{i}" for i in range(len(keys))] and len(keys) >= 3
    assert all(len(s) <= 255 for s in _strings(txt))
    assert parse_txt(*_props(txt)).types == tuple(sorted(types))


def test_too_many_types_are_cut_at_the_budget_and_flagged() -> None:
    types = [f"plant.area{i:03d}.Temperature" for i in range(200)]
    txt = build_txt(node_id=ID_A, name="n", types=types, role="member")
    assert txt["types_more"] == "1"
    type_bytes = sum(1 + len(s) for s in _strings(txt) if s.startswith(b"types") and
                     not s.startswith(b"types_more"))
    assert type_bytes <= TYPES_BUDGET
    advert = parse_txt(*_props(txt))
    assert not advert.types_complete
    # The cut keeps a sorted prefix, so every node cuts the same names.
    assert advert.types == tuple(sorted(types))[: len(advert.types)]
    assert len(advert.types) > 20


def test_a_200_byte_type_name_still_fits_in_one_string() -> None:
    long_name = "a." + "b" * 198
    txt = build_txt(node_id=ID_A, name="n", types=[long_name, "x.Y"], role="member")
    assert all(len(s) <= 255 for s in _strings(txt))
    assert parse_txt(*_props(txt)).types == tuple(sorted([long_name, "x.Y"]))


_type_names = st.from_regex(r"[a-z][a-z0-9_]{0,30}\.[A-Z][A-Za-z0-9]{0,40}", fullmatch=True)


@settings(max_examples=150, deadline=None)
@given(
    types=st.lists(_type_names, max_size=120),
    name=st.text(st.characters(blacklist_categories=("C", "Z")), min_size=1, max_size=300),
)
def test_txt_round_trip_property(types: list[str], name: str) -> None:
    txt = build_txt(node_id=ID_B, name=name, types=types, role="member")
    strings = _strings(txt)
    assert all(len(s) <= 255 for s in strings)
    assert sum(1 + len(s) for s in strings) <= MAX_TXT_BYTES
    advert = parse_txt(*_props(txt))
    assert advert.id == ID_B
    assert name.startswith(advert.name) and advert.name
    assert set(advert.types) <= set(types)
    assert advert.types_complete == (set(advert.types) == set(types))


@pytest.mark.parametrize(
    ("changes", "drop", "why"),
    [
        ({"id": "a1a2a3a4a5a6a7"}, None, "hex digits"),
        ({"id": "a1a2a3a4a5a6a7zz"}, None, "hex digits"),
        ({"id": "a1a2a3a4a5a6a7a8a9"}, None, "hex digits"),
        ({}, "id", "lacks id"),
        ({}, "name", "lacks name"),
        ({}, "version", "lacks version"),
        ({}, "proto", "lacks proto"),
        ({}, "role", "lacks role"),
        ({"name": ""}, None, "bad name"),
        ({"name": "a\nb"}, None, "bad name"),
        ({"name": "x" * 201}, None, "bad name"),
        ({"version": ""}, None, "bad version"),
        ({"version": "v" * 65}, None, "bad version"),
        ({"role": "leader"}, None, "unknown role"),
        ({"types": "brew.Temp,not a type"}, None, "bad type name"),
        ({"types": "Temp"}, None, "bad type name"),
    ],
)
def test_parse_refuses_garbage(changes: dict[str, str], drop: str | None, why: str) -> None:
    txt = _good_txt(**changes)
    if drop:
        del txt[drop]
    with pytest.raises(AdvertError, match=why):
        parse_txt(*_props(txt))


def test_parse_refuses_an_oversized_record_and_non_text() -> None:
    props, _ = _props(_good_txt())
    with pytest.raises(AdvertError, match="bytes"):
        parse_txt(props, MAX_TXT_BYTES + 1)
    with pytest.raises(AdvertError, match="not text"):
        parse_txt({**props, b"\xff\xfe": b"x"}, 100)
    with pytest.raises(AdvertError, match="not text"):
        parse_txt({**props, b"name": b"\xc3"}, 100)


def test_another_wire_version_is_incompatible_not_garbage() -> None:
    with pytest.raises(IncompatibleAdvert, match="proto='2'"):
        parse_txt(*_props(_good_txt(proto="2")))
    assert issubclass(AdvertError, DecodeError)


def test_parse_ignores_unknown_keys_and_key_case_and_bare_keys() -> None:
    txt = {k.upper(): v for k, v in _good_txt().items()}
    props, size = _props(txt)
    props[b"future"] = None
    props[b"colour"] = b"green"
    advert = parse_txt(props, size)
    assert advert.id == ID_A and advert.types == ("brew.Temp",)


def test_numbered_types_keys_stop_at_the_first_gap() -> None:
    txt = _good_txt()
    del txt["types"]
    txt.update(types0="a.B", types1="c.D", types3="e.F")
    assert parse_txt(*_props(txt)).types == ("a.B", "c.D")


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("pi-kitchen", "pi-kitchen-a1a2a3a4"),
        ("my.host.lan", "my-host-lan-a1a2a3a4"),
        ("Living Room", "Living-Room-a1a2a3a4"),
        ("...", "ganglion-a1a2a3a4"),
        ("brauerei-küche", "brauerei-küche-a1a2a3a4"),
    ],
)
def test_instance_label_is_readable_and_one_dns_label(name: str, label: str) -> None:
    assert instance_label(name, ID_A) == label


def test_instance_label_cuts_long_names_on_a_character_boundary() -> None:
    label = instance_label("ü" * 100, ID_A)
    assert len(label.encode()) <= 63 and label.endswith("-a1a2a3a4")
    label.encode().decode("utf-8")  # no split character


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"interface": "eth0"}, InterfaceError, "IPv4"),
        ({"interface": "::1"}, InterfaceError, "IPv4"),
        ({"node_id": b"short"}, ConfigError, "8 bytes"),
        ({"name": ""}, ConfigError, "node name"),
        ({"name": "tab\there"}, ConfigError, "node name"),
        ({"port": 0}, ConfigError, "port"),
        ({"port": 70000}, ConfigError, "port"),
        ({"role": "leader"}, ConfigError, "role"),
        ({"publishes": ["NoDot"]}, ConfigError, "type names"),
        ({"publishes": "brew.Temp"}, ConfigError, "not one str"),
    ],
)
def test_discovery_checks_its_arguments(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    args: dict[str, Any] = {"interface": LO, "node_id": ID_A, "name": "n", "port": 47800}
    with pytest.raises(error, match=match):
        Discovery(**{**args, **kwargs})


def test_browse_once_checks_the_interface() -> None:
    with pytest.raises(InterfaceError):
        asyncio.run(browse_once("lo", 0.1))


# ------------------------------------------------------------- mDNS (netns)


@pytest.fixture
def mdns() -> str:
    """Skip unless mDNS here cannot reach a real network; gives the interface address."""
    problem = mdns_isolation_problem()
    if problem:
        pytest.skip(problem)
    return LO


def _run(coro: Coroutine[Any, Any, None], timeout: float = 30.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


async def _until(check: Callable[[], bool], timeout: float = 6.0, what: str = "") -> None:
    """Poll ``check`` every 20 ms; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or check}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def _running(*discs: Discovery) -> AsyncIterator[None]:
    """Start several Discovery instances at once (probing takes ~1.2 s each) and close them."""
    try:
        await asyncio.gather(*(d.start() for d in discs))
        yield
    finally:
        await asyncio.gather(*(d.close() for d in discs))


def _disc(node_id: bytes, name: str, **kwargs: Any) -> Discovery:
    return Discovery(interface=LO, node_id=node_id, name=name, port=47800, **kwargs)


def test_two_nodes_in_one_process_see_each_other_with_every_field(mdns: str) -> None:
    events: list[tuple[str, AdvertisedPeer]] = []

    async def main() -> None:
        a = _disc(ID_A, "alpha", publishes=["brew.Temp", "brew.Flow"],
                  on_peer_added=lambda p: events.append(("added", p)))
        b = Discovery(interface=mdns, node_id=ID_B, name="beta", port=47811,
                      role="observer")
        async with _running(a, b):
            loop = asyncio.get_running_loop()
            await _until(lambda: len(a.peers()) == 1 and len(b.peers()) == 1, what="peers")
            (pb,) = a.peers()
            (pa,) = b.peers()
            assert pa == AdvertisedPeer(id=ID_A, name="alpha", address=LO, port=47800,
                                  version=__version__, types=("brew.Flow", "brew.Temp"),
                                  role="member", last_seen=pa.last_seen)
            assert (pb.id, pb.name, pb.port, pb.role, pb.types) == (
                ID_B, "beta", 47811, "observer", ())
            assert 0 < loop.time() - pa.last_seen < 10
            assert a.instance_name == f"alpha-a1a2a3a4.{SERVICE_TYPE}"
            assert events == [("added", pb)]
            stats = a.stats()
            assert (stats.peers, stats.added, stats.malformed) == (1, 1, 0)

    _run(main())


def test_update_types_reaches_the_other_node(mdns: str) -> None:
    updated: list[AdvertisedPeer] = []

    async def main() -> None:
        a = _disc(ID_A, "alpha", publishes=["brew.Temp"])
        b = _disc(ID_B, "beta", on_peer_updated=updated.append)
        async with _running(a, b):
            await _until(lambda: len(b.peers()) == 1, what="alpha in beta's table")
            await a.update_types(["brew.Temp", "brew.Flow", "brew.Temp"])
            assert a.types == ("brew.Flow", "brew.Temp")
            await _until(lambda: b.peers()[0].types == ("brew.Flow", "brew.Temp"),
                         what="new types")
            assert updated[-1].types == ("brew.Flow", "brew.Temp")
            count = len(updated)
            await a.update_types(["brew.Flow", "brew.Temp"])  # no change: no re-announce
            await asyncio.sleep(0.5)
            assert len(updated) == count and b.stats().updated == count

    _run(main())


def test_close_sends_a_goodbye_and_the_peer_disappears(mdns: str) -> None:
    removed: list[AdvertisedPeer] = []

    async def main() -> None:
        b = _disc(ID_B, "beta", on_peer_removed=removed.append)
        async with b:
            a = _disc(ID_A, "alpha")
            await a.start()
            await _until(lambda: len(b.peers()) == 1, what="alpha to appear")
            started = time.monotonic()
            await a.close()
            await a.close()  # idempotent
            # Far sooner than the 120 s TTL: only a goodbye packet explains it.
            await _until(lambda: not b.peers(), timeout=5.0, what="goodbye")
            assert time.monotonic() - started < 5.0
            assert [p.id for p in removed] == [ID_A] and b.stats().removed == 1

    _run(main())


def test_start_twice_or_after_close_is_refused(mdns: str) -> None:
    async def main() -> None:
        d = _disc(ID_A, "alpha")
        async with d:
            with pytest.raises(LocalError):
                await d.start()
        with pytest.raises(LocalError):
            await d.start()

    _run(main())


def test_two_nodes_sharing_one_zeroconf_see_each_other_but_not_themselves(mdns: str) -> None:
    async def main() -> None:
        zc = AsyncZeroconf(interfaces=[mdns], ip_version=IPVersion.V4Only)
        try:
            a = _disc(ID_A, "alpha", zeroconf=zc)
            b = _disc(ID_B, "beta", zeroconf=zc)
            async with _running(a, b):
                await _until(lambda: [p.id for p in a.peers()] == [ID_B]
                             and [p.id for p in b.peers()] == [ID_A], what="each other")
            assert not zc.zeroconf.done  # not ours to close
        finally:
            await zc.async_close()

    _run(main())


def test_close_on_a_shared_zeroconf_still_says_goodbye(mdns: str) -> None:
    async def main() -> None:
        zc = AsyncZeroconf(interfaces=[mdns], ip_version=IPVersion.V4Only)
        try:
            a = _disc(ID_A, "alpha", zeroconf=zc)
            c = _disc(ID_C, "gamma")
            async with _running(c):
                await a.start()
                await _until(lambda: len(c.peers()) == 1, what="alpha to appear")
                await a.close()  # the shared zeroconf stays open: only unregister helps
                await _until(lambda: not c.peers(), timeout=5.0, what="goodbye")
        finally:
            await zc.async_close()

    _run(main())


_BAD_ADVERTS: dict[str, dict[str, str]] = {
    "bad-id": _good_txt(id="nothex-nothex-no"),
    "no-keys": {"hello": "world"},
    "bad-role": _good_txt(role="king"),
    "bad-type": _good_txt(types="one,two"),
    "big": {**_good_txt(), **{f"pad{i}": "x" * 240 for i in range(9)}},
    "proto9": _good_txt(proto="9"),
}


async def _register_raw(zc: AsyncZeroconf, label: str, txt: dict[str, str]) -> AsyncServiceInfo:
    info = AsyncServiceInfo(
        SERVICE_TYPE, f"{label}.{SERVICE_TYPE}", addresses=[socket.inet_aton(LO)],
        port=47800, properties=dict(txt), server=f"{label}.local.",
    )
    await zc.async_register_service(info, cooperating_responders=True)
    return info


def test_garbage_adverts_are_ignored_and_counted(mdns: str) -> None:
    async def main() -> None:
        zc = AsyncZeroconf(interfaces=[mdns], ip_version=IPVersion.V4Only)
        try:
            for label, txt in _BAD_ADVERTS.items():
                await _register_raw(zc, label, txt)
            b = _disc(ID_B, "beta")
            async with _running(b, _disc(ID_C, "gamma")):
                await _until(lambda: b.stats().malformed == 5 and b.stats().incompatible == 1,
                             what="every bad advert counted")
                await _until(lambda: len(b.peers()) == 1, what="the good peer")
                assert [p.name for p in b.peers()] == ["gamma"]
        finally:
            await zc.async_close()

    _run(main())


def test_an_advert_not_reachable_over_the_interface_is_dropped_and_counted(mdns: str) -> None:
    # A node on lo may hear a LAN node's mDNS (zeroconf's socket shares port 5353 with
    # SO_REUSEPORT): a LAN address is not a peer over lo (issue 20).
    async def main() -> None:
        zc = AsyncZeroconf(interfaces=[mdns], ip_version=IPVersion.V4Only)
        try:
            lan = AsyncServiceInfo(
                SERVICE_TYPE, f"cellar.{SERVICE_TYPE}", addresses=[socket.inet_aton("10.77.1.1")],
                port=47800, properties=_good_txt(), server="cellar.local.")
            await zc.async_register_service(lan, cooperating_responders=True)
            b = _disc(ID_B, "beta")
            async with _running(b, _disc(ID_C, "gamma")):
                await _until(lambda: b.stats().other_interface >= 1, what="the LAN advert counted")
                await _until(lambda: len(b.peers()) == 1, what="the lo peer")
                assert [p.name for p in b.peers()] == ["gamma"]
            assert [p.name for p in await browse_once(mdns, 1.5)] == []  # cellar is still up
        finally:
            await zc.async_close()

    _run(main())


def test_an_advert_that_turns_bad_removes_the_peer(mdns: str) -> None:
    removed: list[AdvertisedPeer] = []

    async def main() -> None:
        zc = AsyncZeroconf(interfaces=[mdns], ip_version=IPVersion.V4Only)
        try:
            info = await _register_raw(zc, "shifty", _good_txt())
            async with _disc(ID_B, "beta", on_peer_removed=removed.append) as b:
                await _until(lambda: len(b.peers()) == 1, what="shifty while good")
                bad = AsyncServiceInfo(
                    SERVICE_TYPE, info.name, addresses=[socket.inet_aton(LO)], port=47800,
                    properties=_good_txt(id="zz"), server=info.server)
                await zc.async_update_service(bad)
                await _until(lambda: not b.peers(), what="shifty to go")
                assert b.stats().malformed >= 1 and [p.name for p in removed] == ["pi-kitchen"]
        finally:
            await zc.async_close()

    _run(main())


def test_a_failing_callback_is_counted_and_does_not_stop_discovery(mdns: str) -> None:
    def explode(peer: AdvertisedPeer) -> None:
        raise RuntimeError("boom")

    async def main() -> None:
        a = _disc(ID_A, "alpha", on_peer_added=explode)
        async with _running(a, _disc(ID_B, "beta")):
            await _until(lambda: a.stats().callback_errors == 1, what="callback error")
            assert [p.id for p in a.peers()] == [ID_B]

    _run(main())


def test_browse_once_lists_nodes_without_advertising(mdns: str) -> None:
    async def main() -> None:
        async with _disc(ID_A, "alpha", publishes=["brew.Temp"]) as a:
            found = await browse_once(mdns, 1.5)
            assert [(p.id, p.name, p.types) for p in found] == [(ID_A, "alpha", ("brew.Temp",))]
            assert a.peers() == []  # the browser registered nothing
        assert await browse_once(mdns, 0.3) == []

    _run(main())


_PEER_SCRIPT = textwrap.dedent("""
    import asyncio, json, sys
    from ganglion.runtime.discovery import Discovery

    async def main():
        d = Discovery(interface="127.0.0.1", node_id=bytes.fromhex(sys.argv[1]),
                      name="child", port=47900, publishes=["child.Reading"])
        async with d:
            print("ready", flush=True)
            loop = asyncio.get_running_loop()
            for _ in range(500):  # 10 s at most
                if d.peers():
                    break
                await asyncio.sleep(0.02)
            print(json.dumps([[p.id.hex(), p.name, p.types] for p in d.peers()]), flush=True)
            await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), 20)

    asyncio.run(main())
""")


def test_two_processes_find_each_other_and_see_the_goodbye(mdns: str) -> None:
    async def main() -> None:
        async with _disc(ID_A, "parent", publishes=["parent.Reading"]) as a:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _PEER_SCRIPT, ID_C.hex(), cwd=REPO,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert proc.stdin is not None and proc.stdout is not None
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), 15)
                assert line == b"ready\n"
                await _until(lambda: len(a.peers()) == 1, what="the child process")
                (child,) = a.peers()
                assert (child.id, child.name, child.address, child.port, child.types,
                        child.role, child.version) == (
                    ID_C, "child", LO, 47900, ("child.Reading",), "member", __version__)
                seen = json.loads(await asyncio.wait_for(proc.stdout.readline(), 15))
                assert seen == [[ID_A.hex(), "parent", ["parent.Reading"]]]
                proc.stdin.close()
                assert await asyncio.wait_for(proc.wait(), 15) == 0
                await _until(lambda: not a.peers(), timeout=5.0, what="child's goodbye")
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()

    _run(main(), timeout=50.0)



# ------------------------------------------- the peer table, without a network


_raw_properties = st.dictionaries(
    st.one_of(st.sampled_from([b"id", b"name", b"version", b"proto", b"role", b"types",
                               b"types0", b"types1", b"types_more", b"ID"]),
              st.binary(max_size=12)),
    st.one_of(st.none(), st.binary(max_size=40),
              st.sampled_from([b"1", b"member", b"observer", b"a1a2a3a4a5a6a7a8", b"a.B,c.D"])),
    max_size=12,
)


@settings(max_examples=400, deadline=None)
@given(props=_raw_properties, size=st.integers(0, 3 * MAX_TXT_BYTES))
def test_parse_txt_either_accepts_or_raises_advert_error(
    props: dict[bytes, bytes | None], size: int
) -> None:
    try:
        advert = parse_txt(props, size)
    except AdvertError:
        return
    assert len(advert.id) == 8 and advert.role in ("member", "observer") and advert.name


def _table(monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> tuple[Any, list[str]]:
    """A peer table whose resolves only record their names and then wait."""
    from ganglion.runtime import discovery

    table = discovery._PeerBrowser(own_id=ID_A, **kwargs)
    started: list[str] = []

    async def resolve(name: str) -> None:
        started.append(name)
        await asyncio.sleep(30)

    monkeypatch.setattr(table, "_resolve", resolve)
    return table, started


def test_a_newer_event_cancels_the_older_resolve_and_removal_cancels_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from zeroconf import ServiceStateChange as Change

    async def main() -> None:
        table, started = _table(monkeypatch)
        name = f"x-1.{SERVICE_TYPE}"
        table._on_change(None, SERVICE_TYPE, name, Change.Added)
        first = table._resolving[name]
        table._on_change(None, SERVICE_TYPE, name, Change.Updated)
        second = table._resolving[name]
        await asyncio.sleep(0)
        # The first was cancelled before it ran: only the newer resolve started.
        assert first.cancelled() and started == [name]
        table._on_change(None, SERVICE_TYPE, name, Change.Removed)
        await asyncio.gather(first, second, return_exceptions=True)
        assert second.cancelled() and name not in table._resolving
        await table.close()

    asyncio.run(asyncio.wait_for(main(), 10))


def test_a_flood_of_instances_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    from zeroconf import ServiceStateChange as Change

    from ganglion.runtime import discovery

    monkeypatch.setattr(discovery, "MAX_PEERS", 5)

    async def main() -> None:
        table, _ = _table(monkeypatch)
        for i in range(12):
            table._on_change(None, SERVICE_TYPE, f"n{i}.{SERVICE_TYPE}", Change.Added)
        assert len(table._resolving) == 5 and table.stats().overflow == 7
        await table.close()
        assert not table._resolving

    asyncio.run(asyncio.wait_for(main(), 10))


def test_callbacks_see_add_update_and_remove_in_order() -> None:
    from ganglion.runtime import discovery

    seen: list[tuple[str, str]] = []
    table = discovery._PeerBrowser(
        own_id=ID_A,
        on_added=lambda p: seen.append(("added", p.name)),
        on_updated=lambda p: seen.append(("updated", p.name)),
        on_removed=lambda p: seen.append(("removed", p.name)),
    )
    peer = AdvertisedPeer(id=ID_B, name="beta", address=LO, port=1, version="0", types=(),
                    role="member", last_seen=1.0)
    table._peers["b"] = peer
    table._notify("added", peer)
    table._forget("b")
    table._forget("b")  # already gone: no second callback
    assert seen == [("added", "beta"), ("removed", "beta")]
    assert (table.stats().added, table.stats().removed, table.stats().peers) == (1, 1, 0)


# ---------------------------------------------- more mDNS behaviour (netns)


def test_the_advert_on_the_wire_is_what_standard_tools_show(mdns: str) -> None:
    async def main() -> None:
        zc = AsyncZeroconf(interfaces=[mdns], ip_version=IPVersion.V4Only)
        try:
            async with _running(_disc(ID_A, "pi.kitchen", publishes=["brew.Temp"])):
                info = AsyncServiceInfo(SERVICE_TYPE, f"pi-kitchen-a1a2a3a4.{SERVICE_TYPE}")
                assert await info.async_request(zc.zeroconf, 3000)
                assert info.server == "ganglion-a1a2a3a4a5a6a7a8.local."
                assert (info.port, info.parsed_addresses()) == (47800, [LO])
                assert info.decoded_properties == build_txt(
                    node_id=ID_A, name="pi.kitchen", types=["brew.Temp"], role="member")
                # SRV, TXT, A (and NSEC) carry our 120 s TTL. A python-zeroconf
                # receiver floors a PTR's TTL at 1,125 s; the default would be 4,500.
                records = [r for n in (info.name, SERVICE_TYPE, info.server or "")
                           for r in zc.zeroconf.cache.entries_with_name(n)]
                assert {r.type for r in records} >= {1, 12, 16, 33}  # A, PTR, TXT, SRV
                assert {r.ttl for r in records if r.type != 12} == {120}
                assert all(r.ttl <= 1125 for r in records if r.type == 12)
        finally:
            await zc.async_close()

    _run(main())


def test_types_set_before_start_are_advertised_and_bad_ones_refused(mdns: str) -> None:
    async def main() -> None:
        a = _disc(ID_A, "alpha")
        await a.update_types(["late.Type"])
        with pytest.raises(ConfigError):
            await a.update_types(["nodot"])
        b = _disc(ID_B, "beta")
        async with _running(a, b):
            await _until(lambda: len(b.peers()) == 1, what="alpha")
            assert b.peers()[0].types == ("late.Type",)

    _run(main())


def test_a_name_clash_is_resolved_by_renaming(mdns: str) -> None:
    twin = ID_A[:4] + bytes(4)  # same name, same first 8 hex digits, another node

    async def main() -> None:
        b = _disc(twin, "alpha")
        async with _running(_disc(ID_A, "alpha")), _running(b):
            assert b.instance_name == f"alpha-a1a2a3a4-2.{SERVICE_TYPE}"
            await _until(lambda: [p.id for p in b.peers()] == [ID_A], what="the first alpha")

    _run(main())


def test_too_many_types_arrive_flagged_incomplete(mdns: str) -> None:
    types = [f"plant.area{i:03d}.Temperature" for i in range(100)]

    async def main() -> None:
        b = _disc(ID_B, "beta")
        async with _running(_disc(ID_A, "alpha", publishes=types), b):
            await _until(lambda: len(b.peers()) == 1, what="alpha")
            (peer,) = b.peers()
            assert not peer.types_complete
            assert 20 < len(peer.types) < 100 and set(peer.types) < set(types)

    _run(main())


def test_instance_name_and_types_before_start() -> None:
    d = _disc(ID_A, "my.node", publishes=["b.B", "a.A", "b.B"])
    assert d.instance_name == f"my-node-a1a2a3a4.{SERVICE_TYPE}"
    assert d.types == ("a.A", "b.B")
    assert d.peers() == [] and d.stats().peers == 0


def test_browse_once_on_a_shared_zeroconf_leaves_it_open(mdns: str) -> None:
    async def main() -> None:
        zc = AsyncZeroconf(interfaces=[mdns], ip_version=IPVersion.V4Only)
        try:
            async with _running(_disc(ID_B, "beta", role="observer")):
                found = await browse_once(mdns, 1.0, zeroconf=zc)
                assert [(p.id, p.role) for p in found] == [(ID_B, "observer")]
                assert not zc.zeroconf.done
                # The shared zeroconf still works for a second browse.
                assert [p.id for p in await browse_once(mdns, 0.5, zeroconf=zc)] == [ID_B]
        finally:
            await zc.async_close()

    _run(main())
