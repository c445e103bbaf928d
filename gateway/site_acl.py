"""Topic rights on a site's Mosquitto: the devices of one site and their gateway.

Why the site ACL differs from the backend's (``backend.devstack.broker.LUMEAU_ACL``):

- On the **backend** broker a gateway is a sender in its own name: it writes
  batches and its status under ``lumeau/v1/gw/<id>/`` and reads its own
  commands there. Device messages reach the backend only *inside* batches, so
  a gateway needs no right on any device topic of the backend broker, and the
  backend service (``lumeau-backend``) reads everything.
- On the **site** broker the gateway is the one consumer of every device's
  uplinks and the one writer of their downlinks (``error`` replies, commands
  it routes down). It therefore reads ``lumeau/v1/dev/+/up/#`` and writes
  ``lumeau/v1/dev/+/down/#``: rights over *all* devices of the site, but only
  in the direction it forwards. It may not write a device's ``up`` topics
  (it cannot forge a device message on the site) nor read a device's
  ``down`` topics (that is the device's mailbox). There is no backend user on
  a site broker: nothing but devices and their gateway connects to it.
- Devices have the same rights on both brokers (protocol section 10): each
  writes only ``lumeau/v1/dev/<its id>/up/#`` and reads only
  ``lumeau/v1/dev/<its id>/down/#``, so a device can neither speak for
  another nor read another's commands or error replies.

The rights are Mosquitto ``pattern`` lines (``%u`` is the MQTT user name, which
is the device id) plus ``user``/``topic`` lines per gateway. Ids exclude
``+``, ``#`` and ``/`` (protocol section 1), so ``%u`` cannot widen a pattern.
"""

from __future__ import annotations

from collections.abc import Iterable

from edge import protocol

# Every device's own branches (same as on the backend broker).
DEVICE_PATTERNS = """\
pattern write lumeau/v1/dev/%u/up/#
pattern read lumeau/v1/dev/%u/down/#
"""

# What a gateway does on its site: read every device uplink, write every downlink.
GATEWAY_RIGHTS = """\
topic read lumeau/v1/dev/+/up/#
topic write lumeau/v1/dev/+/down/#
"""


def site_acl(gateway_users: Iterable[str]) -> str:
    """The text of a Mosquitto ACL file for a site broker.

    ``gateway_users`` are the site broker user names of the site's gateways
    (usually one; each must be a valid protocol id). Every other user of the
    site broker is taken for a device and gets only its own branches.
    """
    blocks = []
    for user in gateway_users:
        protocol.gateway_topic(user, "up", "status")  # raises on a bad id
        blocks.append(f"user {user}\n{GATEWAY_RIGHTS}")
    if not blocks:
        raise ValueError("a site ACL needs at least one gateway user")
    header = "# Lumeau site broker ACL (gateway/site_acl.py): devices and their gateway.\n"
    # Patterns apply to every user; Mosquitto reads them wherever they stand,
    # but before any ``user`` line they are plainly not tied to one.
    return header + DEVICE_PATTERNS + "\n" + "\n".join(blocks)


__all__ = ["DEVICE_PATTERNS", "GATEWAY_RIGHTS", "site_acl"]
