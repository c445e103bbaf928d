"""Notifications: alert transitions sent to webhooks and e-mail (outbox pattern).

``alert_history`` (migration 0009) is the outbox. The dispatcher fans each new
history row out to the channels that want it (one ``notification_delivery``
row per channel and history row, cursor moved in the same transaction), then
sends due deliveries with retries. See ``docs/notifications.md``.

- ``routing``: which channels want which history row (pure);
- ``signing``: the webhook signature (pure);
- ``backoff``: the retry schedule and how a send outcome is classified (pure);
- ``message``: the webhook body and the e-mail text (pure);
- ``senders``: HTTP and SMTP at the edge;
- ``store``: the SQL (fan-out, claim, outcome);
- ``dispatcher``: the loop; ``cli``: ``lumeau notify run|test``.
"""
