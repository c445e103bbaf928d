"""A small MQTT 3.1.1 client for the boards (MicroPython) that also runs on CPython.

The wire format is ``mqtt_codec`` (pure); this module is the thin I/O around
it: one TCP socket, optionally TLS with certificate and host name checks, a
non-blocking ``poll()`` that an asyncio task calls every few tens of
milliseconds, QoS 1 publish with PUBACK tracking, keepalive pings, and a
clean shutdown that publishes the last-will itself (docs/protocol.md,
"Status and seq").

    c = MQTTClient("cab-0042", "10.0.0.2", 8883, user="cab-0042", password=pw,
                   keepalive=60, clean_session=False,
                   tls={"cadata": ca_pem_bytes, "server_hostname": "broker.site"})
    c.set_will(status_topic, will_bytes, qos=1, retain=True)
    c.on_message = handler            # handler(topic, payload, retain, dup)
    c.on_puback = acked               # acked(pid)
    c.connect()                       # ConnectRefused(code) for a CONNACK refusal
    c.subscribe(cmd_topic, qos=1)     # waits for the SUBACK
    pid = c.publish(topic, payload, qos=1)
    c.poll(0)                         # handle what has arrived; ping when due
    c.disconnect()                    # will published first, then DISCONNECT

Errors (all ``MQTTError``; socket errors stay ``OSError``)::

    MQTTError
     +-- ConnectRefused      CONNACK return code != 0 (.code, .reason)
     +-- ConnectionLost      EOF, missed PINGRESP, ack timeout
     +-- MalformedPacket     the server sent bytes that are not valid MQTT 3.1.1
     +-- TLSError            handshake or certificate verification failed
     +-- SubscribeRefused    SUBACK return code 0x80

After any error the socket is closed (``connected`` is False); the caller
reconnects, pacing itself with ``Backoff``. Messages in flight are not kept
across connections: the device's spool (``edge.spool``) is the in-flight
store and sends again from its head after a reconnect (duplicates are
harmless, storage is idempotent on ``(dev, boot, seq)``).
"""

import sys

import mqtt_codec as codec

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    import socket  # noqa: F401  (used in type comments)
    from collections.abc import Callable  # noqa: F401  (used in type comments)
    from typing import Any  # noqa: F401  (used in type comments)

try:
    import select
except ImportError:  # pragma: no cover - every port we use has it
    select = None  # type: ignore[assignment]  # a port without select: blocking reads

# Ticks are plain ints here (the clocks the tests inject return ints); the
# stubs' opaque _TicksMs is ignored where ticks_ms is taken. The stubs make
# ticks opaque to force time.ticks_add: near the wrap (2**30 ms on the ESP32)
# ``now + timeout_ms`` leaves the small-int range and ticks_diff misreads it.
try:
    from time import ticks_add, ticks_diff, ticks_ms  # MicroPython
except ImportError:
    import time as _time

    def ticks_ms():  # type: ignore[misc]  # CPython twin of time.ticks_ms, as an int
        # type: () -> int
        return int(_time.monotonic() * 1000)  # type: ignore[attr-defined]  # CPython's time

    def ticks_diff(a, b):  # type: ignore[no-redef]  # CPython twin: ticks never wrap
        # type: (int, int) -> int
        return a - b

    def ticks_add(a, b):  # type: ignore[misc]  # CPython twin: ticks never wrap
        # type: (int, int) -> int
        return a + b


_MPY = sys.implementation.name == "micropython"
_POLLIN = getattr(select, "POLLIN", 1)


class MQTTError(Exception):
    """Base of this client's errors."""


class ConnectRefused(MQTTError):
    """The server refused the connection (CONNACK return code ``code``)."""

    def __init__(self, code):
        # type: (int) -> None
        self.code = code
        self.reason = codec.CONNACK_REASONS.get(code, "unknown return code")
        super().__init__("connection refused: " + str(code) + " (" + self.reason + ")")


class ConnectionLost(MQTTError):
    """The connection ended or stopped answering."""


class MalformedPacket(MQTTError):
    """The server sent something that is not valid MQTT 3.1.1."""


class TLSError(MQTTError):
    """TLS handshake or certificate verification failed."""


class SubscribeRefused(MQTTError):
    """The server refused a subscription (SUBACK 0x80)."""


# ---------------------------------------------------------------- sockets


def open_tcp(host, port, timeout_s):
    # type: (str, int, float) -> socket.socket
    """A connected, blocking TCP socket with a timeout (the default opener)."""
    import socket

    ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    sock = socket.socket(ai[0], ai[1], ai[2])
    try:
        sock.settimeout(timeout_s)
        sock.connect(ai[-1])
    except BaseException:
        sock.close()
        raise
    return sock


def _cadata_for_cpython(cadata):
    # type: (bytes | str) -> bytes | str
    # CPython reads str cadata as PEM and bytes as DER; mbedTLS takes either as bytes.
    if isinstance(cadata, bytes) and cadata.lstrip().startswith(b"-----"):
        return cadata.decode("ascii")
    return cadata


def wrap_tls(sock, host, tls):
    # type: (Any, str, dict) -> Any
    """Wrap ``sock`` in TLS, verifying the server's certificate and name.

    ``tls``: ``cadata`` (PEM or DER bytes of the CA; required),
    ``server_hostname`` (default: the host connected to). Probes, in order,
    MicroPython 1.23+'s ``tls.SSLContext``, the ``ssl.SSLContext`` of CPython
    (and of MicroPython's ``ssl`` wrapper), and the older MicroPython
    ``ssl.wrap_socket(..., cert_reqs=, cadata=)``.
    """
    cadata = tls.get("cadata")
    if not cadata:
        raise ValueError("tls needs 'cadata': the certificate of the CA to trust")
    name = tls.get("server_hostname") or host
    try:
        try:
            import tls as _tls  # MicroPython >= 1.23
        except ImportError:
            _tls = None  # type: ignore[assignment]  # CPython, MicroPython < 1.23
        if _tls is not None and hasattr(_tls, "SSLContext"):
            tctx = _tls.SSLContext(_tls.PROTOCOL_TLS_CLIENT)
            # MicroPython's tls.SSLContext has verify_mode; its stub does not list it
            tctx.verify_mode = _tls.CERT_REQUIRED  # type: ignore[attr-defined]
            tctx.load_verify_locations(cadata=cadata)
            return tctx.wrap_socket(sock, server_hostname=name)
        import ssl

        if hasattr(ssl, "SSLContext"):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            # the stubs' ssl.SSLContext is tls's, without these attributes;
            # CPython's has them all, MicroPython's ssl.py has verify_mode
            ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]
            if not _MPY:
                ctx.check_hostname = True  # type: ignore[attr-defined]  # CPython only
                ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # type: ignore[attr-defined]
                cadata = _cadata_for_cpython(cadata)
            ctx.load_verify_locations(cadata=cadata)
            return ctx.wrap_socket(sock, server_hostname=name)
        return ssl.wrap_socket(  # MicroPython < 1.23
            sock, server_hostname=name, cert_reqs=ssl.CERT_REQUIRED, cadata=cadata
        )
    except (OSError, ValueError) as exc:
        raise TLSError("TLS with " + name + " failed: " + str(exc)) from exc


# ---------------------------------------------------------------- backoff


def _default_rand():
    # type: () -> float
    try:
        import random

        return random.getrandbits(16) / 65536
    except (ImportError, AttributeError):
        import os

        b = os.urandom(2)
        return ((b[0] << 8) | b[1]) / 65536


class Backoff:
    """Exponential backoff with jitter for reconnects.

    The n-th consecutive failure waits a random time in [d/2, d) with
    d = min(max_ms, base_ms * 2**n) ("equal jitter"), so a site's devices
    coming back after a broker restart spread out. ``reset()`` on success.
    """

    def __init__(self, base_ms=1000, max_ms=300000, rand=None):
        # type: (int, int, Callable[[], float] | None) -> None
        self.base_ms = base_ms
        self.max_ms = max_ms
        self.failures = 0
        self._rand = rand or _default_rand

    def next_ms(self):
        # type: () -> int
        d = self.base_ms << min(self.failures, 20)
        if d > self.max_ms:
            d = self.max_ms
        self.failures += 1
        half = d // 2
        return half + int(self._rand() * (d - half))

    def reset(self):
        # type: () -> None
        self.failures = 0


# ---------------------------------------------------------------- client


class MQTTClient:
    """One MQTT 3.1.1 connection; see the module docstring."""

    def __init__(
        self,
        client_id,
        host,
        port=1883,
        user=None,
        password=None,
        keepalive=60,
        clean_session=True,
        tls=None,
        timeout_s=10,
        max_packet=16384,
        open_socket=None,
        clock_ms=None,
    ):
        # type: (str, str, int, str | None, str | None, int, bool, dict | None, float, int, Callable[[str, int, float], Any] | None, Callable[[], int] | None) -> None
        self.client_id = client_id
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.clean_session = clean_session
        self.tls = tls
        self.timeout_s = timeout_s
        self.max_packet = max_packet
        self._open = open_socket or open_tcp
        # ticks_ms is the stubs' () -> _TicksMs: ints at run time (see the top)
        self._clock = clock_ms or ticks_ms  # type: Callable[[], int]  # type: ignore[assignment]
        self.on_message = None  # type: Callable[[str, bytes, bool, bool], None] | None
        self.on_puback = None  # type: Callable[[int], None] | None
        self.will = None  # type: tuple[str, bytes, int, bool] | None
        self.session_present = False
        # pid -> ticks sent (QoS 1 publishes awaiting PUBACK)
        self.inflight = {}  # type: dict[int, int]
        self.callback_errors = 0
        self.last_callback_error = None  # type: Exception | None
        # duck-typed: a socket, a TLS socket (either interpreter's) or a test's stand-in
        self._sock = None  # type: Any
        self._poller = None  # type: Any
        self._decoder = None  # type: codec.Decoder | None
        self._pid = 0
        self._last_send = 0
        self._ping_since = None  # type: int | None
        # pid -> None while the SUBACK is awaited, then its return codes
        self._subacks = {}  # type: dict[int, Any]

    # --- state ---------------------------------------------------------------

    @property
    def connected(self):
        # type: () -> bool
        return self._sock is not None

    def set_will(self, topic, payload, qos=1, retain=True):
        # type: (str, bytes, int, bool) -> None
        """The last-will for the next ``connect()`` (composed by the caller)."""
        self.will = (topic, bytes(payload), qos, retain)

    def _next_pid(self):
        # type: () -> int
        for _ in range(65535):
            self._pid = self._pid % 65535 + 1
            if self._pid not in self.inflight and self._pid not in self._subacks:
                return self._pid
        raise MQTTError("no free packet id: 65535 messages in flight")

    # --- I/O -----------------------------------------------------------------

    def _send(self, data):
        # type: (bytes) -> None
        if self._sock is None:
            raise ConnectionLost("not connected")
        try:
            write = getattr(self._sock, "sendall", None) or self._sock.write
            write(data)
        except OSError:
            self.close()
            raise
        self._last_send = self._clock()

    def _readable(self, timeout_ms):
        # type: (int) -> bool
        sock = self._sock
        pending = getattr(sock, "pending", None)  # CPython TLS: already decrypted
        if pending is not None and pending():
            return True
        if self._poller is None:
            return True  # no select: blocking read with the socket timeout
        return bool(self._poller.poll(timeout_ms))

    def _recv(self):
        # type: () -> bytes
        sock = self._sock
        read = getattr(sock, "recv", None) or sock.read
        try:
            data = read(2048)
        except OSError:
            self.close()
            raise
        if not data:
            self.close()
            raise ConnectionLost("the server closed the connection")
        return data

    def _packets(self, data):
        # type: (bytes) -> list
        try:
            return self._decoder.feed(data)  # type: ignore[union-attr]  # set by connect()
        except codec.MQTTProtocolError as exc:
            self.close()
            raise MalformedPacket(str(exc)) from exc

    # --- connection ----------------------------------------------------------

    def connect(self):
        # type: () -> bool
        """Open the socket, TLS, CONNECT; returns CONNACK's session-present flag."""
        self.close()
        sock = self._open(self.host, self.port, self.timeout_s)
        if self.tls is not None:
            try:
                sock = wrap_tls(sock, self.host, self.tls)
            except BaseException:
                sock.close()
                raise
        self._sock = sock
        self._decoder = codec.Decoder(self.max_packet)
        self.inflight = {}
        self._subacks = {}
        self._ping_since = None
        if select is not None and hasattr(select, "poll"):
            self._poller = select.poll()
            self._poller.register(sock, _POLLIN)
        else:
            self._poller = None
        self._send(
            codec.encode_connect(
                self.client_id,
                self.keepalive,
                self.clean_session,
                self.user,
                self.password,
                self.will,
            )
        )
        deadline = ticks_add(self._clock(), int(self.timeout_s * 1000))  # type: ignore[type-var]  # int ticks (see top)
        while True:
            left = ticks_diff(deadline, self._clock())
            if left <= 0:
                self.close()
                raise ConnectionLost("no CONNACK within " + str(self.timeout_s) + " s")
            if not self._readable(left):
                continue
            packets = self._packets(self._recv())
            if not packets:
                continue
            ptype, _flags, body = packets[0]
            if ptype != codec.CONNACK:
                self.close()
                raise MalformedPacket("expected CONNACK, got " + codec.packet_name(ptype))
            try:
                present, rc = codec.parse_connack(body)
            except codec.MQTTProtocolError as exc:
                self.close()
                raise MalformedPacket(str(exc)) from exc
            if rc != 0:
                self.close()
                raise ConnectRefused(rc)
            self.session_present = present
            for p in packets[1:]:
                self._handle(p)
            return present

    def close(self):
        # type: () -> None
        """Drop the socket without DISCONNECT (the broker will publish the will)."""
        sock = self._sock
        self._sock = None
        self._poller = None
        if sock is not None:
            try:  # noqa: SIM105 - no contextlib on MicroPython
                sock.close()
            except OSError:
                pass

    def disconnect(self, publish_will=True):
        # type: (bool) -> None
        """Clean shutdown: publish the will ourselves (QoS 1, waits for its
        PUBACK), then DISCONNECT, which makes the broker discard the will."""
        if self._sock is None:
            return
        try:
            if publish_will and self.will is not None:
                topic, payload, qos, retain = self.will
                pid = self.publish(topic, payload, qos, retain)
                if pid:
                    self.wait_for(lambda: pid not in self.inflight)
            self._send(codec.DISCONNECT)
        finally:
            self.close()

    # --- operations ----------------------------------------------------------

    def publish(self, topic, payload, qos=0, retain=False):
        # type: (str, bytes, int, bool) -> int
        """Send one PUBLISH; returns its packet id (0 for QoS 0)."""
        pid = self._next_pid() if qos else 0
        self._send(codec.encode_publish(topic, payload, qos, retain, pid))
        if pid:
            self.inflight[pid] = self._last_send
        return pid

    def subscribe(self, topic, qos=1, wait=True):
        # type: (str, int, bool) -> int
        """SUBSCRIBE one filter; with ``wait`` block (polling) until its SUBACK."""
        pid = self._next_pid()
        self._subacks[pid] = None
        self._send(codec.encode_subscribe(pid, [(topic, qos)]))
        if wait:
            self.wait_for(lambda: self._subacks.get(pid) is not None)
            codes = self._subacks.pop(pid)
            if codes[0] == 0x80:
                raise SubscribeRefused("subscription to " + topic + " refused")
        return pid

    def ping(self):
        # type: () -> None
        self._send(codec.PINGREQ)
        if self._ping_since is None:
            self._ping_since = self._last_send

    def wait_for(self, done, timeout_ms=None):
        # type: (Callable[[], bool], int | None) -> None
        """Poll until ``done()`` is true; ConnectionLost after the timeout."""
        if timeout_ms is None:
            timeout_ms = int(self.timeout_s * 1000)
        deadline = ticks_add(self._clock(), timeout_ms)  # type: ignore[type-var]  # int ticks
        while not done():
            left = ticks_diff(deadline, self._clock())
            if left <= 0:
                self.close()
                raise ConnectionLost("no answer from the server within " + str(timeout_ms) + " ms")
            self.poll(min(left, 100))

    def poll(self, timeout_ms=0):
        # type: (int) -> int
        """Handle what the server sent (waiting up to ``timeout_ms``) and
        send a PINGREQ when one is due. Returns the number of packets handled."""
        if self._sock is None:
            raise ConnectionLost("not connected")
        n = 0
        if self._readable(timeout_ms):
            for p in self._packets(self._recv()):
                self._handle(p)
                n += 1
        self._keepalive()
        return n

    def _keepalive(self):
        # type: () -> None
        if not self.keepalive or self._sock is None:
            return
        now = self._clock()
        ka = self.keepalive * 1000
        if self._ping_since is not None and ticks_diff(now, self._ping_since) > ka:
            self.close()
            raise ConnectionLost(
                "no PINGRESP within the keepalive of " + str(self.keepalive) + " s"
            )
        if self._ping_since is None and ticks_diff(now, self._last_send) >= ka // 2:
            self.ping()

    def _handle(self, packet):
        # type: (tuple) -> None
        ptype, flags, body = packet
        try:
            if ptype == codec.PUBLISH:
                topic, payload, qos, retain, dup, pid = codec.parse_publish(flags, body)
                if qos == 2:
                    raise codec.MQTTProtocolError("PUBLISH with QoS 2; this client asks for 1")
                self._deliver(topic, payload, retain, dup)
                if qos == 1:
                    self._send(codec.encode_puback(pid))
            elif ptype == codec.PUBACK:
                pid = codec.parse_pid(body)
                if self.inflight.pop(pid, None) is not None and self.on_puback is not None:
                    self.on_puback(pid)
            elif ptype == codec.SUBACK:
                pid, codes = codec.parse_suback(body)
                if pid in self._subacks:
                    self._subacks[pid] = codes
            elif ptype == codec.UNSUBACK:
                codec.parse_pid(body, "UNSUBACK")
            elif ptype == codec.PINGRESP:
                if body:
                    raise codec.MQTTProtocolError("PINGRESP with a body")
                self._ping_since = None
            else:
                raise codec.MQTTProtocolError(
                    "unexpected " + codec.packet_name(ptype) + " on an open session"
                )
        except codec.MQTTProtocolError as exc:
            self.close()
            raise MalformedPacket(str(exc)) from exc

    def _deliver(self, topic, payload, retain, dup):
        # type: (str, bytes, bool, bool) -> None
        if self.on_message is None:
            return
        try:
            self.on_message(topic, payload, retain, dup)
        except Exception as exc:  # the app's bug must not kill the connection
            self.callback_errors += 1
            self.last_callback_error = exc
