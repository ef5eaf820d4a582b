"""What ``ganglion install-service`` checks before it writes a unit.

Theory of operation: a unit that cannot start does not fail once, it crash-loops
(``Restart=on-failure``) and the user only sees it in the journal. So everything
that would make ``ganglion node`` exit at start is checked here, where the user
is: the node arguments (parsed by the real ``ganglion node`` command), the config
file (loaded and its plugins created, as the node does), the account (it exists,
it is not root unless asked, and it can reach the Python and the config file:
systemd runs the node as that account from ``/``, so relative paths and files in
another user's home break it). Every problem found is reported, not just the first.

The permission check reads the mode bits along the path (owner, group, other), as
the kernel does for the account, so it needs no ``setuid`` and works as any user.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

__all__ = ["Account", "blocked_for", "check_service", "lookup_account"]


@dataclass(frozen=True, slots=True)
class Account:
    """A local account: its name, uid, and every group it is in."""

    name: str
    uid: int
    gids: frozenset[int]


def lookup_account(name: str) -> Account | None:
    """The account named ``name``, or None when this machine has none by that name."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return Account(name, entry.pw_uid, frozenset(os.getgrouplist(name, entry.pw_gid)))


def blocked_for(path: Path, account: Account, want: int) -> Path | None:
    """The first place on ``path`` that stops ``account`` from using it, or None.

    Args:
        path: an absolute path (symbolic links are followed, as the kernel does).
        account: who will use it.
        want: what the account needs on the file itself: ``os.R_OK`` or ``os.X_OK``
            (every directory on the way needs search permission).

    Returns:
        The directory or file whose mode bits refuse the account, or the path itself
        when it does not exist; None when the account gets through. Root always does.
    """
    if account.uid == 0:
        return None
    real = Path(os.path.realpath(path))
    for place, need in [*((d, os.X_OK) for d in reversed(real.parents)), (real, want)]:
        try:
            st = place.stat()
        except OSError:
            return place
        if not _allows(st, account, need):
            return place
    return None


def check_service(*, account_name: str, allow_root: bool, python: str,
                  node_args: list[str]) -> list[str]:
    """Every reason the unit would not start, as sentences for the user.

    Args:
        account_name: the account the node will run as.
        allow_root: the user asked for root (``--allow-root``).
        python: the Python in ``ExecStart``.
        node_args: the arguments for ``ganglion node`` (``--config`` made absolute).

    Returns:
        The problems found; empty when the unit should start.
    """
    problems: list[str] = []
    account = lookup_account(account_name)
    if account is None:
        problems.append(f"there is no account named {account_name!r} on this machine: give "
                        "--user NAME of an existing one (sudo useradd --system --create-home "
                        "--groups gpio,i2c,dialout ganglion makes one)")
    elif account.uid == 0 and not allow_root:
        problems.append("the node would run as root, which docs/raspberry-pi.md advises "
                        "against: give --user NAME (an account in the gpio, i2c and dialout "
                        "groups), or --allow-root if you mean it")
    if account is not None and (where := blocked_for(Path(python), account, os.X_OK)):
        problems.append(f"{account.name} cannot run {python} ({where} is not open to it): "
                        "install ganglion where that account can reach it, e.g. in a "
                        "virtualenv of its own")
    params = _parse_node_args(node_args, problems)
    if params is None:
        return problems
    problems.extend(_relative_paths(params))
    config = params.get("config_file")
    if config is not None:
        _check_config(Path(config), params, account, problems)
    return problems


def _parse_node_args(node_args: list[str], problems: list[str]) -> dict[str, Any] | None:
    """The node arguments as ``ganglion node`` itself parses them (None when it cannot)."""
    from ganglion.cli.cmd_node import node

    try:
        ctx = node.make_context("node", list(node_args))
    except click.ClickException as exc:
        problems.append(f"`ganglion node {' '.join(node_args)}` would fail: "
                        f"{exc.format_message()}")
        return None
    except click.exceptions.Exit:
        problems.append("the node arguments ask for --help, which is not a way to run a node")
        return None
    return dict(ctx.params)


def _relative_paths(params: dict[str, Any]) -> list[str]:
    """Relative path arguments: systemd starts the node in ``/``, where they mean another file."""
    from ganglion.cli.cmd_node import node

    found = []
    for param in node.params:
        value = params.get(param.name or "")
        if isinstance(param.type, click.Path) and value is not None and \
                not Path(value).is_absolute():
            found.append(f"{param.opts[-1]} {value}: systemd starts the node in /, so give an "
                         f"absolute path ({Path(value).resolve()}?)")
    return found


def _check_config(config: Path, params: dict[str, Any], account: Account | None,
                  problems: list[str]) -> None:
    """The config file exists, the account can read it, and the node would accept it."""
    from ganglion.config import load_config, merge
    from ganglion.errors import GanglionError
    from ganglion.plugins import load_plugins

    if not config.is_file():
        problems.append(f"the config file {config} does not exist")
        return
    if account is not None and (where := blocked_for(config, account, os.R_OK)):
        problems.append(f"{account.name} cannot read the config file {config} ({where} is not "
                        "open to it)")
    try:
        loaded = merge(load_config(config), {
            "plugins": params.get("plugins"), "sim_kinds": params.get("sim_kinds"),
            "sim_interval": params.get("interval"), "hardware": params.get("hardware"),
            "gpio": params.get("gpio")})
        load_plugins(loaded.plugin_specs(include_hardware=True))
    except GanglionError as exc:
        problems.append(f"the node would refuse its config: {exc}")


def _allows(st: os.stat_result, account: Account, need: int) -> bool:
    bits = {os.R_OK: (stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH),
            os.X_OK: (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)}[need]
    if st.st_uid == account.uid:
        return bool(st.st_mode & bits[0])
    if st.st_gid in account.gids:
        return bool(st.st_mode & bits[1])
    return bool(st.st_mode & bits[2])
