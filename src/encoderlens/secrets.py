"""Keeping secrets (Hugging Face tokens) out of messages, exceptions and logs.

A token is never formatted into a message by encoderlens, but text that comes back from elsewhere can
carry it: a proxy or mirror that echoes the request's Authorization header in an error body, which
huggingface_hub then quotes in its exception and in its log lines. Everything that leaves a hub call
(exception text, log records) is passed through `redact` first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from urllib.parse import quote

REDACTED = "***"
# the libraries a hub call logs through (huggingface_hub, its HTTP client)
HUB_LOGGER_PREFIXES = ("huggingface_hub", "httpx", "httpx2", "httpcore", "httpcore2")


def _forms(secrets: Iterable[str | None]) -> list[str]:
    """Each secret as it may appear in text: raw and URL-encoded; longest first so that no
    shorter secret leaves part of a longer one behind."""
    forms = set()
    for secret in secrets:
        if secret:
            forms.update({secret, quote(secret, safe="")})
    return sorted(forms, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every occurrence of each secret replaced by `***`; None and "" are ignored."""
    for form in _forms(secrets):
        text = text.replace(form, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a log record's message (and its formatted traceback) with the secrets redacted."""

    def __init__(self, secrets: Iterable[str | None]):
        super().__init__()
        self.secrets = _forms(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            # Formatter.format uses exc_text when it is set, so pre-format the traceback redacted
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info), self.secrets)
        return True


@contextmanager
def redacted_logs(secrets: Iterable[str | None], prefixes=HUB_LOGGER_PREFIXES) -> Iterator[None]:
    """Redact `secrets` from records logged by the loggers under `prefixes` inside the block.

    A filter on a logger only sees records created by that very logger (not by its children), so it
    is attached to each existing logger under the prefixes; the hub modules create theirs at import.
    """
    secrets = [s for s in secrets if s]
    if not secrets:
        yield
        return
    redacting = RedactingFilter(secrets)
    names = [name for name in list(logging.root.manager.loggerDict)
             if name.split(".")[0] in prefixes]
    loggers = [logging.getLogger(name) for name in names]
    for logger in loggers:
        logger.addFilter(redacting)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(redacting)
