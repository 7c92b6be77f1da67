"""Which failures are the user's to fix, and the one line that says so.

The CLI prints ``textdml <verb>: error: <line>`` (exit 2) for these and a traceback (exit 1) for
anything else, which is a bug. Library code raises ``ValueError`` (bad input: config, data,
checkpoints, run folders) and lets ``OSError`` through (files, disks, networks); what third-party
code raises for the same causes (Qdrant's lock and HTTP errors, safetensors) is recognised here
by name, so nothing is imported to check it.
"""

from __future__ import annotations

import errno
import warnings
from collections.abc import Iterator


class ConfigError(ValueError):
    """A recipe or override that does not fit the schema."""


def refuse_unless_forced(message: str, remedy: str, force: bool) -> None:
    """Raise ``message`` (e.g. a collection written by another model or sparse source) naming
    ``remedy`` and ``--force``; under ``force`` only warn."""
    if not force:
        raise ValueError(f"{message}. Use {remedy}, or pass --force (force=True)")
    # stacklevel: past this helper and the check that called it, to the caller of the check.
    warnings.warn(message + "; going on because of --force", UserWarning, stacklevel=4)


LOCKED = "already accessed by another instance of Qdrant client"
DISK_FULL = ("No space left on device", "os error 28", "Disk quota exceeded")
HTTP_HINTS = {
    401: "the server wants a key: set index.api_key or the QDRANT_API_KEY environment variable",
    403: "the key was refused: check index.api_key / QDRANT_API_KEY",
    404: "check index.url (and index.collection)",
    503: "the server is starting, overloaded or shutting down: retry in a moment",
}


def causes(err: BaseException) -> Iterator[BaseException]:
    """``err`` and the exceptions it was raised from or while handling, without cycles."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_kind(err: BaseException, *names: str) -> bool:
    return any(cls.__name__ in names for cls in type(err).__mro__)


def explain(err: BaseException) -> str | None:
    """The one-line message for a failure the user can fix, or None (a bug: show the traceback).

    Example:
        >>> explain(OSError(28, "No space left on device", "runs/x/model.safetensors"))
        "disk full writing 'runs/x/model.safetensors': free space on that disk or point training.output_dir (or index.path) at one with room; the last complete checkpoint is intact"
        >>> explain(ZeroDivisionError("a bug")) is None
        True
    """
    chain = list(causes(err))
    for cause in chain:
        if is_disk_full(cause):
            where = getattr(cause, "filename", None) or next(
                (c.filename for c in chain if isinstance(c, OSError) and c.filename), None)
            return (f"disk full{f' writing {str(where)!r}' if where else ''}: free space on that disk or point "
                    "training.output_dir (or index.path) at one with room; the last complete checkpoint is intact")
    if any(map(is_hub_failure, chain)):  # the Hub, not Qdrant: "check index.url" would send the user astray
        if isinstance(err, (ValueError, OSError)) and "Hugging Face Hub" in str(err):
            return one_line(err)  # textdml's own message names the model and the fix
        return (f"a model or file could not be fetched from the Hugging Face Hub ({first_line(chain[-1])}): it is "
                "not in the local cache; give a local folder, or run online (HF_HUB_OFFLINE unset) to download it")
    for cause in chain:
        if isinstance(cause, RuntimeError) and LOCKED in str(cause):
            folder = str(cause).split(" is already", 1)[0].removeprefix("Storage folder ").strip()
            return (f"the Qdrant folder {folder!r} is open in another process (embedded Qdrant allows one at a "
                    "time): stop that process, point index.path elsewhere, or use a Qdrant server (index.url)")
        if is_kind(cause, "UnexpectedResponse"):
            code = getattr(cause, "status_code", None)
            reason = getattr(cause, "reason_phrase", "") or ""
            hint = HTTP_HINTS.get(code, "check index.url and the server's log")  # type: ignore[arg-type]
            return f"the Qdrant server answered {code} {reason}".rstrip() + f": {hint}"
        if is_kind(cause, "ResponseHandlingException", "ConnectError", "ConnectTimeout", "ReadTimeout") or \
                isinstance(cause, (ConnectionError, TimeoutError)):
            url = next((u for u in map(request_url, chain) if u), None)
            return (f"cannot reach the server{f' at {url}' if url else ''} ({first_line(cause) or type(cause).__name__}):"
                    " check index.url and that the server is running, or use embedded Qdrant with index.path")
    if isinstance(err, KeyError):
        return str(err.args[0]) if err.args else "missing key"
    if isinstance(err, (ValueError, OSError)):
        return one_line(err) or type(err).__name__
    if is_kind(err, "SafetensorError"):
        return (f"a weights file is damaged or incomplete ({first_line(err)}): the save that wrote it was "
                "interrupted or the file was truncated; save or copy the model again")
    return None


def request_url(err: BaseException) -> str | None:
    """The URL of the request an httpx error belongs to (its ``request`` raises when unset)."""
    try:
        request = getattr(err, "request", None)
    except RuntimeError:
        return None
    url = getattr(request, "url", None)
    if url is None:
        return None
    from textdml.redaction import redact_url

    return redact_url(str(url))


def is_hub_failure(err: BaseException) -> bool:
    """An error of huggingface_hub (offline mode, a file missing from the cache) or of a request to the Hub."""
    return type(err).__module__.startswith("huggingface_hub") or "huggingface.co" in (request_url(err) or "")


def is_disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(text in str(err) for text in DISK_FULL)


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else ""
