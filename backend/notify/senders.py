"""The edge: one webhook POST, one e-mail, each turned into a ``SendResult``.

Neither raises for a failure of the receiver: every network error, timeout
and refusal becomes a verdict (retry or dead) with a reason, so one bad
channel is one bad delivery and nothing more.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Final
from urllib.parse import urlsplit

import httpx

from backend.notify.backoff import SendResult, Verdict, classify_http, parse_retry_after
from backend.notify.settings import SmtpSettings

USER_AGENT: Final = "Lumeau-Notifier/1"
MAX_RESPONSE_BYTES: Final = 2048  # of an error answer, read at most
ERROR_EXCERPT_CHARS: Final = 200  # of it, kept in last_error


async def post_webhook(
    client: httpx.AsyncClient, url: str, body: bytes, headers: Mapping[str, str]
) -> SendResult:
    """POST ``body`` to ``url``; redirects are not followed."""
    try:
        async with client.stream(
            "POST",
            url,
            content=body,
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
            follow_redirects=False,
        ) as response:
            # Read a little of the answer (a receiver may send gigabytes).
            excerpt = b""
            async for chunk in response.aiter_bytes():
                excerpt += chunk
                if len(excerpt) >= MAX_RESPONSE_BYTES:
                    break
    except httpx.TimeoutException as exc:
        return SendResult(Verdict.RETRY, error=f"timeout: {type(exc).__name__}")
    except httpx.HTTPError as exc:
        return SendResult(Verdict.RETRY, error=f"{type(exc).__name__}: {exc}"[:300])
    verdict = classify_http(response.status_code)
    if verdict is Verdict.SENT:
        return SendResult(verdict, status_code=response.status_code)
    text = answer_excerpt(excerpt)
    reason = f"HTTP {response.status_code}" + (f": {text}" if text else "")
    if 300 <= response.status_code < 400:
        reason += f" (redirect to {location_origin(response.headers.get('location'))} not followed)"
    retry_after = None
    if verdict is Verdict.RETRY:
        retry_after = parse_retry_after(response.headers.get("retry-after"), datetime.now(UTC))
    return SendResult(
        verdict, status_code=response.status_code, error=reason, retry_after_s=retry_after
    )


def answer_excerpt(body: bytes, limit: int = ERROR_EXCERPT_CHARS) -> str:
    """The start of an error answer as one line of printable text (for ``last_error``).

    Technicians read ``last_error``: control characters and line breaks are
    replaced, so an answer cannot fake lines in a log or a console.
    """
    text = body[: limit * 4].decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else " " for c in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def location_origin(location: str | None) -> str:
    """Only the scheme and host of a redirect's ``Location``.

    The rest (path, query, user info) may carry the webhook's secret token,
    and ``last_error`` is readable by technicians and written to the log.
    """
    if not location:
        return "?"
    try:
        parts = urlsplit(location.strip())
        host = parts.hostname
    except ValueError:
        return "an unreadable location"
    if not parts.scheme or not host:
        return "a relative location"
    return f"{parts.scheme.lower()}://{host}"


def send_email(smtp: SmtpSettings, message: EmailMessage, recipients: list[str]) -> SendResult:
    """Send ``message`` to ``recipients`` through the configured server (blocking)."""
    if smtp.host is None or smtp.sender is None:
        return SendResult(Verdict.RETRY, error="SMTP is not configured (LUMEAU_SMTP_HOST)")
    try:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout_s) as server:
            if smtp.starttls:
                server.starttls(context=ssl.create_default_context())
            if smtp.username is not None and smtp.password is not None:
                server.login(smtp.username, smtp.password.get_secret_value())
            refused = server.send_message(message, from_addr=smtp.sender, to_addrs=recipients)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        verdict = Verdict.RETRY if any(400 <= c < 500 for c in codes) else Verdict.DEAD
        refused_list = ", ".join(f"{r} ({c})" for r, (c, _) in exc.recipients.items())
        return SendResult(
            verdict, status_code=max(codes), error=f"recipients refused: {refused_list}"
        )
    except smtplib.SMTPResponseException as exc:
        # 4yz: transient (try again); 5yz: permanent. A failed login is the
        # configuration's fault, not the message's: retried until fixed.
        transient = 400 <= exc.smtp_code < 500 or isinstance(exc, smtplib.SMTPAuthenticationError)
        text = (
            exc.smtp_error.decode("utf-8", "replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        return SendResult(
            Verdict.RETRY if transient else Verdict.DEAD,
            status_code=exc.smtp_code,
            error=f"SMTP {exc.smtp_code}: {text}"[:300],
        )
    except (OSError, smtplib.SMTPException) as exc:
        # Connection refused or lost, timeouts, TLS failures, no AUTH offered.
        return SendResult(Verdict.RETRY, error=f"{type(exc).__name__}: {exc}"[:300])
    if refused:
        # Some recipients took it: sent, with the others named.
        names = ", ".join(f"{r} ({code})" for r, (code, _) in refused.items())
        return SendResult(Verdict.SENT, status_code=250, error=f"some recipients refused: {names}")
    return SendResult(Verdict.SENT, status_code=250)
