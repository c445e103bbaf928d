"""Protocol v1 constants (version, topic root, limits, kinds, units, metrics),
its error codes and ``ProtocolError``.

Part of ``edge.protocol`` (import from there); the values of docs/protocol.md.
Every public name here is a public name of ``edge.protocol``. ``FLOAT_DIGITS``
lives in ``edge.canonjson``.
"""

VERSION = 1
TOPIC_ROOT = "lumeau/v1"

# Size limits (see docs/protocol.md, "Limits").
MAX_DEVICE_PAYLOAD = 8192  # bytes, any message that is not a batch
MAX_BATCH_PAYLOAD = 1048576  # bytes, a gateway batch (1 MiB)
MAX_BATCH_MSGS = 1000  # inner messages per batch
MAX_READINGS = 128  # readings per telemetry message
MAX_VALUES = 64  # metrics per reading
MAX_ID_LEN = 64  # device, gateway, command ids
MAX_NAME_LEN = 32  # event codes, command names, error codes
MAX_METRIC_LEN = 48  # metric names
MAX_TEXT_LEN = 256  # reasons, strings inside detail/args/result
MAX_FW_LEN = 32  # firmware version string
MAX_KEY_LEN = 64  # keys inside detail/args/result
MAX_DETAIL_ITEMS = 32  # values inside an event's detail (all levels)
MAX_ARGS_ITEMS = 512  # values inside a command's args
MAX_RESULT_ITEMS = 256  # values inside an ack's result
MAX_DEPTH = 4  # nesting of objects/arrays inside detail/args/result
MAX_JSON_DEPTH = 32  # nesting of arrays/objects in any payload (bad_json past it)
MAX_MAGNITUDE = 1e15  # generic bound on any metric value
MAX_FREE_INT = 9007199254740992  # 2**53: bound on integers in detail/args/result
TS_MIN = 1577836800000  # 2020-01-01T00:00:00Z, ms
TS_MAX = 4102444800000  # 2100-01-01T00:00:00Z, ms
SEQ_MAX = 2147483647  # 2**31 - 1
CH_MAX = 255
BOOT_MIN_LEN = 8
BOOT_MAX_LEN = 16

# Topic tree: scope -> direction -> kinds.
UPLINK_KINDS = ("telemetry", "event", "status", "ack", "recording")
DOWNLINK_KINDS = ("cmd", "error")
GATEWAY_UPLINK_KINDS = ("batch", "status")
GATEWAY_DOWNLINK_KINDS = ("cmd",)
# Kinds on the topic tree whose payload is not defined yet (none since
# ``recording`` was defined, an additive change within v1).
RESERVED_KINDS = ()  # type: tuple[str, ...]

SEVERITIES = ("info", "warning", "critical")
STATES = ("online", "offline")
DEVICE_ROLES = ("cabinet", "leak_sensor")
GATEWAY_ROLES = ("gateway",)

# Unit suffix (the text after a metric name's last "_") -> unit.
UNITS = {
    "w": "watt",
    "wh": "watt-hour",
    "var": "volt-ampere reactive",
    "va": "volt-ampere",
    "v": "volt",
    "a": "ampere",
    "hz": "hertz",
    "pct": "percent",
    "ratio": "dimensionless ratio",
    "db": "decibel",
    "dbm": "decibel-milliwatt",
    "c": "degree Celsius",
    "s": "second",
    "lx": "lux",
    "pa": "pascal",
    "m": "metre",
    "m3": "cubic metre",
    "mps2": "metre per second squared",
    "j": "joule",
    "b": "byte",
    "count": "count (integer >= 0)",
    "bool": "boolean (integer 0 or 1)",
}

# Known metrics and their physical range [low, high], inclusive.
METRICS = {
    "power_w": (0, 100000),
    "reactive_power_var": (-100000, 100000),
    "apparent_power_va": (0, 100000),
    "energy_wh": (0, 1e12),
    "voltage_v": (0, 1000),
    "current_a": (0, 1000),
    "frequency_hz": (0, 1000),
    "power_factor_ratio": (-1, 1),
    "level_pct": (0, 100),
    "mains_bool": (0, 1),
    "door_bool": (0, 1),
    "lamp_on_bool": (0, 1),
    "temperature_c": (-60, 150),
    "illuminance_lx": (0, 200000),
    "battery_v": (0, 10),
    "battery_pct": (0, 100),
    "pressure_pa": (0, 10000000),
    "noise_rms_db": (-200, 200),
    "noise_min_db": (-200, 200),
    "noise_spread_db": (0, 200),
    "noise_peak_hz": (0, 100000),
    "rssi_dbm": (-150, 30),
    "snr_db": (-50, 100),
    "uptime_s": (0, 1e10),
    "queue_count": (0, 1e9),
    "dropped_count": (0, 1e9),
}

# Raw acoustic recordings (kind ``recording``, docs/protocol.md). One message
# carries one chunk ("part") of one recording, its samples in base64.
REC_FORMATS = {"s16le": 2}  # sample format -> bytes per sample
CLOCK_SOURCES = ("ntp", "gps", "rtc")
# Samples per chunk: 2808 s16le samples are 5616 bytes (a multiple of 3, so a
# full chunk's base64 has no padding), 7488 base64 characters; with every other
# field at its longest the message is 7,958 bytes, under MAX_DEVICE_PAYLOAD
# with room to spare (tests/unit/test_protocol.py builds that worst case).
MAX_REC_SAMPLES = 2808
MAX_REC_BYTES = 5616  # MAX_REC_SAMPLES * 2 (the widest format)
MAX_REC_DATA = 7488  # base64 characters of MAX_REC_BYTES
MAX_REC_PARTS = 10000  # chunks per recording
REC_FS_MIN = 100  # Hz
REC_FS_MAX = 192000  # Hz
T0_US_MIN = TS_MIN * 1000  # recording start, UTC microseconds
T0_US_MAX = TS_MAX * 1000  # exclusive
MAX_CLOCK_UNC_US = 1000000000000  # 10**12 us (11.6 days): a device saturates here
MAX_CLOCK_AGE_S = SEQ_MAX  # seconds since the clock's last sync (68 years)
SHA256_HEX_LEN = 64

ERROR_CODES = (
    "bad_json",
    "not_object",
    "too_large",
    "missing_field",
    "bad_type",
    "bad_value",
    "out_of_range",
    "unknown_kind",
    "bad_version",
    "bad_topic",
    "topic_mismatch",
    "unknown_field",
)


class ProtocolError(ValueError):
    """A message that breaks protocol v1.

    Attributes
    ----------
    code : str
        Short machine code, e.g. ``"out_of_range"`` (see ``ERROR_CODES``).
    reason : str
        Human text naming the field and the bad value or the limit.
    field : str or None
        Dotted path of the offending field, e.g.
        ``"readings[3].values.power_w"``; None for the whole payload.
    """

    def __init__(self, code, reason, field=None):
        # type: (str, str, str | None) -> None
        super().__init__(code + ": " + reason)
        self.code = code
        self.reason = reason
        self.field = field
