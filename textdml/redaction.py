"""Secrets never reach a file or a log: config values named like a key, token, secret or password
are replaced before a config is saved (``run_config.json``, checkpoints, the model card), and a
log filter masks the secret values themselves, and the password of any URL, wherever else they
might show up (log lines, the CLI's error line, ``--debug`` tracebacks).

Example:
    >>> redact({"index": {"url": "http://q:6333", "api_key": "s3cr3t"}, "loss": {"name": "info_nce"}})
    {'index': {'url': 'http://q:6333', 'api_key': '***'}, 'loss': {'name': 'info_nce'}}
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# Matched against the key (lower case, "-" read as "_"): api_key, hf_token, client_secret, password, ...
SECRET_KEY = re.compile(r"(^|_)(api_?key|apikey|key|token|secret|password|passwd|pwd|credentials?|auth)(_|$)")
# Keys that contain one of the words above but hold no secret.
NOT_SECRET = frozenset({"max_tokens_per_batch", "key_field", "token_type_ids", "tokenizer", "pad_token", "eos_token",
                        "bos_token", "cls_token", "sep_token", "unk_token", "mask_token"})
# Environment variables whose name looks secret but whose value is a path the shell sets ("pwd" is
# also short for password): masking them would hide every path under the working folder.
NOT_SECRET_ENVIRONMENT = frozenset({"PWD", "OLDPWD", "SSH_AUTH_SOCK"})
# The password of a URL in free text: scheme://user:PASSWORD@host (the user name is kept).
URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:)(?P<password>[^\s/@]+)@")


def is_secret_key(key: str) -> bool:
    """Whether a config key names a secret (``api_key``, ``hf_token``, ``password``, ...)."""
    name = key.lower().replace("-", "_")
    return name not in NOT_SECRET and bool(SECRET_KEY.search(name))


def redact(value: Any) -> Any:
    """A copy of ``value`` (nested dicts / lists) with secret-named values masked and URL passwords removed."""
    if isinstance(value, dict):
        return {k: (MASK if is_secret_key(str(k)) and v not in (None, "") else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str) and "@" in value and "://" in value:
        return redact_url(value)
    return value


def redact_url(url: str) -> str:
    """``https://user:pw@host/x`` -> ``https://user:***@host/x``; other strings unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = f"{parts.username}:{MASK}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def secret_values(value: Any) -> set[str]:
    """Every secret string inside ``value`` (what ``redact`` would mask), to mask in free text."""
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            if is_secret_key(str(k)) and isinstance(v, str) and v:
                found.add(v)
            else:
                found |= secret_values(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            found |= secret_values(v)
    elif isinstance(value, str) and "@" in value and "://" in value:
        try:
            password = urlsplit(value).password
        except ValueError:
            password = None
        if password:
            found.add(password)
    return found


def environment_secrets(environ: dict[str, str] | None = None) -> set[str]:
    """Values of secret-named environment variables (``QDRANT_API_KEY``, ``HF_TOKEN``, ...), to mask too.

    Paths are left out: the shell's ``PWD`` / ``OLDPWD`` (and any value naming an existing file or
    folder) would otherwise turn every path under the working folder into ``***``.

    Example:
        >>> sorted(environment_secrets({"HF_TOKEN": "hf_abcdef", "PWD": "/home/me/work", "PATH": "/usr/bin"}))
        ['hf_abcdef']
    """
    environ = dict(os.environ) if environ is None else environ
    return {value for key, value in environ.items()
            if value and key.isupper() and key not in NOT_SECRET_ENVIRONMENT and is_secret_key(key)
            and not is_existing_path(value)}


def is_existing_path(value: str) -> bool:
    """Whether ``value`` names an existing file or folder (a credentials *file* path is no secret)."""
    try:
        return os.path.isabs(value) and os.path.exists(value)
    except (OSError, ValueError):  # a NUL byte or a name too long for the file system
        return False


def mask_url_passwords(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` replaced by ``***``.

    Example:
        >>> mask_url_passwords("cannot reach http://me:pw@q:6333/x (refused)")
        'cannot reach http://me:***@q:6333/x (refused)'
    """
    return URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret, and every URL password, replaced by ``***``."""
    # Secrets of one to three characters would mask half of every message; none are that short.
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return mask_url_passwords(text)


class SecretFilter(logging.Filter):
    """Masks known secret values and URL passwords in every record that passes a handler (message,
    arguments and the traceback of ``logger.exception``)."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = set(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = mask_text(record.getMessage(), self.secrets)
        record.args = None
        if record.exc_info and not record.exc_text:  # the formatter prints exc_text when it is set
            record.exc_text = mask_text("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"),
                                        self.secrets)
        elif record.exc_text:
            record.exc_text = mask_text(record.exc_text, self.secrets)
        return True


def masked_excepthook(secrets: Iterable[str]) -> Callable[[type[BaseException], BaseException,
                                                           TracebackType | None], None]:
    """A ``sys.excepthook`` that prints the traceback with ``secrets`` and URL passwords masked
    (what ``textdml --debug`` installs before it lets an exception through)."""
    secrets = set(secrets)

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        sys.stderr.write(mask_text("".join(traceback.format_exception(kind, error, tb)), secrets))

    return hook


def mask_logs(secrets: Iterable[str]) -> SecretFilter:
    """Add a ``SecretFilter`` to every handler of the root logger (URL passwords are masked even
    when no secret value is known)."""
    log_filter = SecretFilter(secrets)
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, SecretFilter)]:
            handler.removeFilter(old)  # one filter per handler, holding the latest secrets
        handler.addFilter(log_filter)
    return log_filter
