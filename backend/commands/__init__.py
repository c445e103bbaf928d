"""Commands people send to devices through the API (docs/api.md, "Commands").

    build.py      the commands (set_level override, get/release_recording):
                  arguments checked as the device checks them, protocol
                  ``cmd`` message, topic (direct or relayed by the gateway). Pure.
    publisher.py  ``CommandPublisher``; ``MqttCommandPublisher``: one paho
                  client for the API process, QoS 1, waits for the PUBACK.

The command rows and their state (table ``command``, view ``command_status``,
migration 0012) are the API's: ``backend/api/queries/commands.py``.
"""
