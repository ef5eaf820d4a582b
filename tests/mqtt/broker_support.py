"""A real Mosquitto for tests: its own process on 127.0.0.1, a free port, a temp dir.

:class:`Broker` writes a config (plain, with a password file made by
``mosquitto_passwd``, or with TLS from a CA and server certificate made here with
``cryptography``), starts ``mosquitto -c`` and waits until the port accepts;
:meth:`Broker.kill` ends it by PID, :meth:`Broker.start` starts it again on the
same port (a broker restart). :class:`Watcher` is an MQTT client (paho, its own
network thread) that records what arrives; every wait has a deadline.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
LOOPBACK = "127.0.0.1"


def missing_tools() -> str | None:
    """What is missing to run a broker here (Debian: mosquitto, mosquitto-clients), or None."""
    for tool in (MOSQUITTO, "mosquitto_passwd", "mosquitto_pub"):
        if shutil.which(tool) is None and not Path(tool).is_file():
            return f"{Path(tool).name} is not installed (Debian packages mosquitto, mosquitto-clients)"
    return None


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 10.0,
               step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


class Tls:
    """A CA and a server certificate for 127.0.0.1 (and a second, unrelated CA)."""

    def __init__(self, where: Path) -> None:
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        def name(cn: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

        def pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
            return key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption())

        now = dt.datetime.now(dt.UTC)

        def ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
            key = ec.generate_private_key(ec.SECP256R1())
            cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
                    .public_key(key.public_key()).serial_number(x509.random_serial_number())
                    .not_valid_before(now - dt.timedelta(minutes=5))
                    .not_valid_after(now + dt.timedelta(days=1))
                    .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                    .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                                 crl_sign=True, content_commitment=False,
                                                 key_encipherment=False, data_encipherment=False,
                                                 key_agreement=False, encipher_only=False,
                                                 decipher_only=False), critical=True)
                    .sign(key, hashes.SHA256()))
            return cert, key

        ca_cert, ca_key = ca("ganglion test CA")
        other_cert, _ = ca("some other CA")
        server_key = ec.generate_private_key(ec.SECP256R1())
        server = (x509.CertificateBuilder().subject_name(name("127.0.0.1"))
                  .issuer_name(ca_cert.subject).public_key(server_key.public_key())
                  .serial_number(x509.random_serial_number())
                  .not_valid_before(now - dt.timedelta(minutes=5))
                  .not_valid_after(now + dt.timedelta(days=1))
                  .add_extension(x509.SubjectAlternativeName(
                      [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                  .sign(ca_key, hashes.SHA256()))
        self.ca = where / "ca.pem"
        self.other_ca = where / "other-ca.pem"
        self.cert = where / "server.pem"
        self.key = where / "server.key"
        self.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        self.other_ca.write_bytes(other_cert.public_bytes(serialization.Encoding.PEM))
        self.cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
        self.key.write_bytes(pem_key(server_key))
        self.key.chmod(0o600)


class Broker:
    """One Mosquitto process on 127.0.0.1.

    Args:
        where: its directory (config, persistence, log).
        users: user -> password for a password file (anonymous refused then).
        tls: serve TLS with these certificates.
    """

    def __init__(self, where: Path, *, users: dict[str, str] | None = None,
                 tls: Tls | None = None) -> None:
        self.dir = where
        where.mkdir(parents=True, exist_ok=True)
        self.port = free_tcp_port()
        self.log = where / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [f"listener {self.port} {LOOPBACK}", "persistence true",
                 f"persistence_location {where}/", f"log_dest file {self.log}",
                 "log_type error", "log_type warning", "log_type notice",
                 "max_queued_messages 100000"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to `mosquitto`, who cannot read tmp_path
        if users:
            passwd = where / "passwd"
            passwd.touch()
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password],
                               check=True, capture_output=True, timeout=10)
            lines += ["allow_anonymous false", f"password_file {passwd}"]
        else:
            lines.append("allow_anonymous true")
        if tls is not None:
            lines += [f"cafile {tls.ca}", f"certfile {tls.cert}", f"keyfile {tls.key}"]
        self.config = where / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """Start it (again, on the same port) and wait until it accepts connections."""
        assert self.proc is None or self.proc.poll() is not None
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def accepting() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"mosquitto exited: {err}\n{self.log_text()}")
            with socket.socket() as s:
                s.settimeout(0.2)
                return s.connect_ex((LOOPBACK, self.port)) == 0

        wait_until(accepting, f"mosquitto on port {self.port}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """End it by PID (SIGTERM saves retained messages; SIGKILL does not) and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def url(self) -> str:
        return f"mqtt://{LOOPBACK}:{self.port}"


class Watcher:
    """An MQTT client that records every message on its subscriptions.

    Args:
        broker: the broker.
        topics: topic filters to subscribe to.
        tls_ca: a CA file for a TLS broker.
        username, password: credentials.
    """

    def __init__(self, broker: Broker, *topics: str, tls_ca: Path | None = None,
                 username: str | None = None, password: str | None = None) -> None:
        import paho.mqtt.client as paho

        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls_ca is not None:
            self.client.tls_set(ca_certs=str(tls_ca))
        topics_qos = [(t, 1) for t in topics]

        def on_connect(client: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
            if not rc.is_failure and topics_qos:
                client.subscribe(topics_qos)

        def on_subscribe(*_args: Any) -> None:
            self._subscribed.set()

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            with self._lock:
                self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect(LOOPBACK, broker.port)
        self.client.loop_start()
        if topics:
            wait_until(self._subscribed.is_set, "the watcher's subscription")

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return list(self.messages)

    def on(self, topic: str) -> list[bytes]:
        """Payloads seen on exactly ``topic``, in order."""
        return [p for t, p, _r in self.snapshot() if t == topic]

    def latest(self, topic: str) -> bytes | None:
        seen = self.on(topic)
        return seen[-1] if seen else None

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        wait_until(condition, what, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
