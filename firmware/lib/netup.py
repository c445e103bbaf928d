"""Network bring-up on the board (Wi-Fi station or Ethernet) and the clock.

Called from ``main.py`` only; nothing happens at import.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - never true at run time
    from collections.abc import Callable  # noqa: F401  (used in type comments)

    import mqtt  # noqa: F401  (used in type comments)


def wifi(ssid, key, timeout_ms=20000):
    # type: (str, str, int) -> bool
    import time

    import network

    sta = network.WLAN(network.STA_IF)
    sta.active(True)
    if not sta.isconnected():
        sta.connect(ssid, key)
        t0 = time.ticks_ms()
        while not sta.isconnected() and time.ticks_diff(time.ticks_ms(), t0) < timeout_ms:
            time.sleep_ms(100)
    return sta.isconnected()


def sync_clock(host=None):
    # type: (str | None) -> bool
    """Set the RTC from NTP (the site gateway runs one); False on failure."""
    try:
        import ntptime

        if host:
            ntptime.host = host
        ntptime.settime()
        return True
    except (OSError, ImportError, OverflowError):
        return False


def make_client_factory(cfg):
    # type: (dict) -> Callable[[], mqtt.MQTTClient]
    """A function making the device's MQTT client from the provisioned config."""
    import mqtt

    tls = None
    if cfg.get("ca_file"):
        with open(cfg["ca_file"], "rb") as f:
            tls = {"cadata": f.read(), "server_hostname": cfg.get("broker_name")}

    def make():
        # type: () -> mqtt.MQTTClient
        return mqtt.MQTTClient(
            cfg["dev"], cfg["broker"], cfg.get("port", 8883 if tls else 1883),
            user=cfg["dev"], password=cfg["password"], keepalive=cfg.get("keepalive", 60),
            clean_session=False, tls=tls,
        )  # fmt: skip

    return make
