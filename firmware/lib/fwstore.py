"""Small JSON files on flash (settings, schedule), written atomically.

store = JsonStore("/data")
store.save("settings", {"telemetry_s": 600})
store.load("settings") -> dict | None     None when missing or unreadable
"""

import json
import os


class JsonStore:
    def __init__(self, folder):
        # type: (str) -> None
        self.folder = folder
        try:  # noqa: SIM105 - no contextlib on MicroPython
            os.mkdir(folder)
        except OSError:
            pass  # exists

    def _path(self, name):
        # type: (str) -> str
        return self.folder + "/" + name + ".json"

    def load(self, name):
        # type: (str) -> dict | None
        try:
            with open(self._path(name)) as f:
                obj = json.loads(f.read())
        except (OSError, ValueError):
            return None
        return obj if isinstance(obj, dict) else None

    def save(self, name, obj):
        # type: (str, dict) -> None
        tmp = self._path(name + "~")
        with open(tmp, "w") as f:
            f.write(json.dumps(obj))
        os.rename(tmp, self._path(name))
