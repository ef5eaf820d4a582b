"""psycopg is an optional extra: nothing imports it until a forwarder connects."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_logger_and_forward_package_do_not_import_psycopg() -> None:
    code = ("import sys, ganglion.cli.main, ganglion.logger, ganglion.logger.plugin, "
            "ganglion.forward, ganglion.logger.influx; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'psycopg'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"
