# Types of the optional C extension ganglion/_c/ (see ganglion/runtime/_accel.py).
from collections.abc import Callable
from typing import Any

ABI: int
RECV_SIZE: int
MAX_BATCH: int
HEAD_MAX: int
#: (owner "module:Class", attribute name) of every attribute the extension reads by name.
NAMES: tuple[tuple[str, str], ...]

class Lane:
    def __init__(self, incoming: object, streams: dict[bytes, Any], subs: dict[str, Any],
                 by_name: dict[str, Any], info_cls: type, fallback: object, sub_cls: type,
                 tracker_cls: type) -> None: ...
    @property
    def tracker_slots(self) -> dict[str, int]: ...

class SendLane:
    def __init__(self, next_seq: dict[str, int], name: str, sender: object, out: object,
                 packer: object, group: str, port: int, plan: tuple[Any, ...],
                 max_payload: int, yield_cpu: bool,
                 kept: list[Any] | None = None) -> None: ...
    @property
    def yields_cpu(self) -> bool: ...
    @property
    def packer_slots(self) -> dict[str, int]: ...
    def publish(self, msg: object) -> tuple[bytes, int, int, int, bool] | None: ...

def send_lone(sender: object, host: str, port: int, packer: object, ts_ns: int, msg: object,
              plan: tuple[Any, ...], max_payload: int,
              yield_cpu: bool) -> tuple[bytes, int] | None: ...

def batch_add(packer: object, ts_ns: int, msg: object, plan: tuple[Any, ...],
              max_payload: int) -> tuple[bytes, bool] | None: ...

def plan_decode(plan: tuple[Any, ...], payload: bytes) -> object | None: ...

def plan_encode(plan: tuple[Any, ...], msg: object) -> bytes | None: ...

def drain(fd: int, slot: object, limit: int, buffer: bytearray, lane: Lane | None,
          on_datagram: Callable[..., object] | None, on_run: Callable[..., object] | None,
          now: Callable[[], float] | None, report: Callable[[str, object], object] | None,
          counts: list[int], max_size: int, ifindex: int) -> None: ...
