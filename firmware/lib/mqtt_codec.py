"""MQTT 3.1.1 wire format, pure: bytes in, bytes out, no sockets.

Written from the OASIS MQTT 3.1.1 specification (2014), sections 2 and 3.
Runs unchanged on MicroPython (1.19+) and CPython; ``firmware/lib/mqtt.py``
does the I/O around it. Only what a device needs: CONNECT (will, user,
password, clean session, keepalive), PUBLISH QoS 0/1, PUBACK, SUBSCRIBE,
UNSUBSCRIBE, PINGREQ, DISCONNECT out; CONNACK, PUBLISH, PUBACK, SUBACK,
UNSUBACK, PINGRESP in. QoS 2 is refused (a device never asks for it).

    encode_connect(client_id, keepalive, clean, user, password, will) -> bytes
    encode_publish(topic, payload, qos, retain, pid, dup) -> bytes
    encode_puback(pid) / encode_subscribe(pid, [(topic, qos)]) / encode_unsubscribe
    PINGREQ, DISCONNECT                                   constant packets
    Decoder(max_packet).feed(data) -> [(type, flags, body), ...]
    parse_connack(body) / parse_publish(flags, body) / parse_pid(body) / parse_suback

Every malformed input raises ``MQTTProtocolError`` (a ``ValueError``) with a
reason naming the packet and the fault; the decoder is then unusable (the
caller closes the connection).
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):  # type: ignore[misc]  # CPython's stand-in, int only
        # type: (int) -> int
        return x


CONNECT = const(1)
CONNACK = const(2)
PUBLISH = const(3)
PUBACK = const(4)
PUBREC = const(5)
PUBREL = const(6)
PUBCOMP = const(7)
SUBSCRIBE = const(8)
SUBACK = const(9)
UNSUBSCRIBE = const(10)
UNSUBACK = const(11)
PINGREQ_TYPE = const(12)
PINGRESP = const(13)
DISCONNECT_TYPE = const(14)

MAX_REMAINING = const(268435455)  # 4 bytes of remaining length (spec 2.2.3)

PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"

# CONNACK return codes (spec 3.2.2.3)
CONNACK_REASONS = {
    0: "accepted",
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}

_NAMES = {
    1: "CONNECT",
    2: "CONNACK",
    3: "PUBLISH",
    4: "PUBACK",
    5: "PUBREC",
    6: "PUBREL",
    7: "PUBCOMP",
    8: "SUBSCRIBE",
    9: "SUBACK",
    10: "UNSUBSCRIBE",
    11: "UNSUBACK",
    12: "PINGREQ",
    13: "PINGRESP",
    14: "DISCONNECT",
}

# Packets a client may receive, with the fixed-header flags the spec requires
# (None: PUBLISH, whose flags carry dup/qos/retain).
_INBOUND_FLAGS = {
    CONNACK: 0,
    PUBLISH: None,
    PUBACK: 0,
    PUBREC: 0,
    PUBREL: 2,
    PUBCOMP: 0,
    SUBACK: 0,
    UNSUBACK: 0,
    PINGRESP: 0,
}


class MQTTProtocolError(ValueError):
    """Bytes that are not valid MQTT 3.1.1 (or not valid from a server)."""


def packet_name(ptype):
    # type: (int) -> str
    return _NAMES.get(ptype, "type " + str(ptype))


# ---------------------------------------------------------------- encoding


def _utf8(s, what):
    # type: (str | bytes, str) -> bytes
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    if len(b) > 65535:
        raise ValueError(what + " is " + str(len(b)) + " bytes; MQTT strings stop at 65535")
    return bytes((len(b) >> 8, len(b) & 255)) + b


def _check_topic(topic, wildcards):
    # type: (str, bool) -> None
    if not topic:
        raise ValueError("empty topic")
    if "\x00" in topic:
        raise ValueError("topic contains a NUL character")
    if not wildcards and ("+" in topic or "#" in topic):
        raise ValueError("wildcards are not allowed in a PUBLISH topic: " + repr(topic))


def _check_pid(pid):
    # type: (int) -> None
    if not 1 <= pid <= 65535:
        raise ValueError("packet id must be 1..65535, got " + str(pid))


def encode_length(n):
    # type: (int) -> bytes
    """The variable-length 'remaining length' (spec 2.2.3)."""
    if not 0 <= n <= MAX_REMAINING:
        raise ValueError("remaining length out of range: " + str(n))
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _packet(first, body):
    # type: (int, bytes) -> bytes
    return bytes((first,)) + encode_length(len(body)) + body


def encode_connect(client_id, keepalive=60, clean=True, user=None, password=None, will=None):
    # type: (str, int, bool, str | None, str | bytes | None, tuple | None) -> bytes
    """CONNECT (spec 3.1). ``will`` is ``(topic, payload, qos, retain)`` or None."""
    if not 0 <= keepalive <= 65535:
        raise ValueError("keepalive must be 0..65535 s, got " + str(keepalive))
    if password is not None and user is None:
        raise ValueError("a password needs a user name (spec 3.1.2.9)")
    flags = 0x02 if clean else 0
    payload = _utf8(client_id, "client id")
    if will is not None:
        wtopic, wpayload, wqos, wretain = will
        _check_topic(wtopic, False)
        if wqos not in (0, 1, 2):
            raise ValueError("will QoS must be 0, 1 or 2")
        flags |= 0x04 | (wqos << 3) | (0x20 if wretain else 0)
        payload += _utf8(wtopic, "will topic") + _utf8(wpayload, "will payload")
    if user is not None:
        flags |= 0x80
        payload += _utf8(user, "user name")
    if password is not None:
        flags |= 0x40
        payload += _utf8(password, "password")
    var = b"\x00\x04MQTT\x04" + bytes((flags, keepalive >> 8, keepalive & 255))
    return _packet(0x10, var + payload)


def encode_publish(topic, payload, qos=0, retain=False, pid=0, dup=False):
    # type: (str, bytes, int, bool, int, bool) -> bytes
    """PUBLISH (spec 3.3); ``pid`` is required (1..65535) for QoS 1."""
    _check_topic(topic, False)
    if qos not in (0, 1):
        raise ValueError("QoS must be 0 or 1, got " + str(qos))
    first = 0x30 | (qos << 1) | (1 if retain else 0) | (0x08 if dup and qos else 0)
    var = _utf8(topic, "topic")
    if qos:
        _check_pid(pid)
        var += bytes((pid >> 8, pid & 255))
    return _packet(first, var + bytes(payload))


def _pid_packet(first, pid):
    # type: (int, int) -> bytes
    _check_pid(pid)
    return bytes((first, 2, pid >> 8, pid & 255))


def encode_puback(pid):
    # type: (int) -> bytes
    return _pid_packet(0x40, pid)


def encode_subscribe(pid, topics):
    # type: (int, list) -> bytes
    """SUBSCRIBE (spec 3.8): ``topics`` is a list of ``(filter, qos)``."""
    _check_pid(pid)
    if not topics:
        raise ValueError("SUBSCRIBE needs at least one topic filter")
    body = bytes((pid >> 8, pid & 255))
    for flt, qos in topics:
        _check_topic(flt, True)
        if qos not in (0, 1, 2):
            raise ValueError("requested QoS must be 0, 1 or 2")
        body += _utf8(flt, "topic filter") + bytes((qos,))
    return _packet(0x82, body)


def encode_unsubscribe(pid, filters):
    # type: (int, list) -> bytes
    _check_pid(pid)
    if not filters:
        raise ValueError("UNSUBSCRIBE needs at least one topic filter")
    body = bytes((pid >> 8, pid & 255))
    for flt in filters:
        _check_topic(flt, True)
        body += _utf8(flt, "topic filter")
    return _packet(0xA2, body)


# ---------------------------------------------------------------- decoding


class Decoder:
    """Splits a byte stream into packets; checks the fixed header.

    ``feed(data)`` returns the complete packets as ``(type, flags, body)``
    and keeps a partial one for the next call. A packet larger than
    ``max_packet`` bytes of body is refused before it is buffered.
    """

    def __init__(self, max_packet=16384):
        # type: (int) -> None
        self.max_packet = max_packet
        self._buf = b""

    @property
    def buffered(self):
        # type: () -> int
        return len(self._buf)

    def feed(self, data):
        # type: (bytes) -> list
        buf = self._buf + bytes(data) if self._buf else bytes(data)
        out = []
        pos = 0
        end = len(buf)
        while pos < end:
            first = buf[pos]
            ptype = first >> 4
            flags = first & 0x0F
            if ptype not in _INBOUND_FLAGS:
                raise MQTTProtocolError("unexpected packet from the server: " + packet_name(ptype))
            want = _INBOUND_FLAGS[ptype]
            if want is not None and flags != want:
                raise MQTTProtocolError(
                    packet_name(ptype) + ": reserved flags are " + hex(flags) + ", not " + hex(want)
                )
            # remaining length: 1-4 bytes, 7 bits each
            n = 0
            shift = 0
            i = pos + 1
            complete = False
            while i < end:
                b = buf[i]
                n |= (b & 0x7F) << shift
                i += 1
                if not b & 0x80:
                    complete = True
                    break
                shift += 7
                if shift >= 28:
                    raise MQTTProtocolError("remaining length longer than 4 bytes")
            if not complete:
                break
            if n > self.max_packet:
                raise MQTTProtocolError(
                    packet_name(ptype)
                    + " of "
                    + str(n)
                    + " bytes is over the limit of "
                    + str(self.max_packet)
                )
            if i + n > end:
                break
            out.append((ptype, flags, buf[i : i + n]))
            pos = i + n
        self._buf = buf[pos:]
        return out


def _need(body, n, what):
    # type: (bytes, int, str) -> None
    if len(body) != n:
        raise MQTTProtocolError(what + ": body is " + str(len(body)) + " bytes, not " + str(n))


def parse_connack(body):
    # type: (bytes) -> tuple
    """``(session_present, return_code)`` (spec 3.2)."""
    _need(body, 2, "CONNACK")
    if body[0] & 0xFE:
        raise MQTTProtocolError("CONNACK: reserved acknowledge flags set: " + hex(body[0]))
    return bool(body[0] & 1), body[1]


def parse_pid(body, what="PUBACK"):
    # type: (bytes, str) -> int
    _need(body, 2, what)
    pid = (body[0] << 8) | body[1]
    if pid == 0:
        raise MQTTProtocolError(what + ": packet id 0")
    return pid


def parse_suback(body):
    # type: (bytes) -> tuple
    """``(pid, [granted qos or 0x80 failure, ...])`` (spec 3.9)."""
    if len(body) < 3:
        raise MQTTProtocolError("SUBACK: body of " + str(len(body)) + " bytes is too short")
    pid = parse_pid(body[:2], "SUBACK")
    codes = list(body[2:])
    for c in codes:
        if c not in (0, 1, 2, 0x80):
            raise MQTTProtocolError("SUBACK: invalid return code " + hex(c))
    return pid, codes


def parse_publish(flags, body):
    # type: (int, bytes) -> tuple
    """``(topic, payload, qos, retain, dup, pid)`` (spec 3.3); pid 0 for QoS 0."""
    qos = (flags >> 1) & 3
    if qos == 3:
        raise MQTTProtocolError("PUBLISH: QoS 3 is invalid")
    if qos == 0 and flags & 0x08:
        raise MQTTProtocolError("PUBLISH: DUP set on a QoS 0 message")
    if len(body) < 2:
        raise MQTTProtocolError("PUBLISH: body too short for a topic")
    tlen = (body[0] << 8) | body[1]
    pos = 2 + tlen
    if pos > len(body):
        raise MQTTProtocolError(
            "PUBLISH: topic length " + str(tlen) + " runs past the packet (" + str(len(body)) + ")"
        )
    try:
        topic = body[2:pos].decode("utf-8")
    except (UnicodeError, ValueError):
        raise MQTTProtocolError("PUBLISH: topic is not UTF-8") from None
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        raise MQTTProtocolError("PUBLISH: invalid topic name " + repr(topic))
    pid = 0
    if qos:
        if pos + 2 > len(body):
            raise MQTTProtocolError("PUBLISH: missing packet id")
        pid = (body[pos] << 8) | body[pos + 1]
        if pid == 0:
            raise MQTTProtocolError("PUBLISH: packet id 0")
        pos += 2
    return topic, body[pos:], qos, bool(flags & 1), bool(flags & 8), pid
