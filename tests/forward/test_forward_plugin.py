"""The ``log`` plugin's ``forward`` option: a real node logs its simulated sensor and
forwards into a real PostgreSQL from a thread; at stop, what was logged is on the server."""

from __future__ import annotations

import signal
from pathlib import Path

from fwd_support import log_rows, pg_count, pg_rows
from node_support import Spawner, wait_sync
from pg_support import PgServer


def test_the_log_plugin_forwards_what_it_logs(spawn: Spawner, central: str, pg: PgServer,
                                              tmp_path: Path, port: int) -> None:
    db = tmp_path / "log.db"
    secret = tmp_path / "pw"
    secret.write_text("s3cret-pw\n")
    config = tmp_path / "node.toml"
    config.write_text(f'''plugins = ["log"]

[plugin.log]
db = "{db}"
interval = 0.1
forward = "{central.replace(':s3cret-pw@', '@')}"
forward_password_file = "{secret}"
''')
    node = spawn("node", "--config", str(config), "--sim", "temperature", "--interval", "0.02",
                 "--no-hardware", "--state-dir", str(tmp_path / "state"), "--port", str(port),
                 "--iface", "127.0.0.1", label="node")
    wait_sync(lambda: pg_count(central) >= 50, "50 readings forwarded by the plugin", timeout=60)
    node.kill(signal.SIGTERM)
    assert node.popen.returncode == 0, node.describe()
    rows = log_rows(db)
    assert len(rows) >= 50 and pg_rows(central) == rows


def test_a_wrong_password_leaves_the_plugin_logging(spawn: Spawner, pg: PgServer, tmp_path: Path,
                                                    port: int) -> None:
    db = tmp_path / "log.db"
    config = tmp_path / "node.toml"
    config.write_text(f'''plugins = ["log"]

[plugin.log]
db = "{db}"
interval = 0.1
forward = "{pg.url('postgres').replace(':s3cret-pw@', ':wrong@')}"
''')
    node = spawn("node", "--config", str(config), "--sim", "temperature", "--interval", "0.02",
                 "--no-hardware", "--state-dir", str(tmp_path / "state"), "--port", str(port),
                 "--iface", "127.0.0.1", label="node")
    node.wait_for_err("logging without forwarding", timeout=30)
    wait_sync(lambda: db.exists() and len(log_rows(db)) >= 20, "20 readings logged", timeout=30)
    node.kill(signal.SIGTERM)
    assert node.err.count("password authentication failed") == 1, node.describe()
