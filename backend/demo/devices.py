"""The devices' own MQTT clients on the site broker: real mosquitto_pub and mosquitto_sub."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time

from edge import protocol

from .script import CABINET, Publication


def publish(pub: Publication, host: str, port: int, password: str, tool: str) -> str:
    cmd = [tool, "-h", host, "-p", str(port), "-V", "mqttv5", "-i", f"{pub.device}-demo"]
    cmd += ["-u", pub.device, "-P", password, "-q", "1", "-t", pub.topic, "-s"]
    if pub.retain:
        cmd.append("-r")
    done = subprocess.run(cmd, input=pub.payload, capture_output=True, timeout=30, check=False)
    if done.returncode != 0:
        return (done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}")[:70]
    return "sent"


class ErrorReplies:
    """The cabinet's own view of its error topic on the site broker (real mosquitto_sub)."""

    def __init__(self, host: str, port: int, password: str, tool: str) -> None:
        topic = protocol.downlink_topic(CABINET, "error")
        cmd = [tool, "-h", host, "-p", str(port), "-V", "mqttv5", "-i", f"{CABINET}-demo-sub"]
        cmd += ["-u", CABINET, "-P", password, "-q", "1", "-t", topic]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        time.sleep(0.5)  # let the subscription reach the broker before anything is sent

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            self.lines.append(raw.decode(errors="replace").strip())

    def codes(self) -> list[str]:
        found = []
        for line in list(self.lines):
            with contextlib.suppress(ValueError, AttributeError):
                found.append(str(json.loads(line).get("code")))
        return found

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)
        self._reader.join(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
