"""The PACS endpoints the page may use, chosen by the operator on the server (never by a visitor).

Two sources, both optional, read by :func:`configured`:

- the file named by ``SPARSECT_PACS_CONFIG`` (``sparsect app --pacs-config FILE`` sets it), TOML or JSON::

      [[pacs]]
      name = "Radiology PACS"                     # what visitors pick
      url = "https://pacs.example.org/dicom-web"  # DICOMweb root
      user_env = "RADIOLOGY_PACS_USER"            # credentials: names of environment variables ...
      password_env = "RADIOLOGY_PACS_PASSWORD"
      # token_env = "..." or token_file = "/run/secrets/pacs-token" or password_file = "..."  (... or files)
      allow_send = false                          # "Send to PACS" (STOW-RS) for this endpoint
      same_study = false                          # sent series join the source study (else a research study)

  (JSON: ``{"pacs": [{"name": ..., "url": ..., ...}]}``). Secrets themselves are never written in it.
- ``SPARSECT_PACS_URL``: one endpoint named ``SPARSECT_PACS_NAME`` (default "PACS") with the credentials of
  ``SPARSECT_DICOMWEB_USER``/``SPARSECT_DICOMWEB_PASSWORD`` or ``SPARSECT_DICOMWEB_TOKEN``; sending only with
  ``SPARSECT_PACS_ALLOW_SEND=1``.

Problems raise :class:`ConfigError` with one line (no secret in it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparsect import data

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

CONFIG_VARIABLE = "SPARSECT_PACS_CONFIG"
URL_VARIABLE, NAME_VARIABLE, SEND_VARIABLE = "SPARSECT_PACS_URL", "SPARSECT_PACS_NAME", "SPARSECT_PACS_ALLOW_SEND"
_KEYS = {"name", "url", "user_env", "password_env", "token_env", "password_file", "token_file", "allow_send",
         "same_study"}
_TRUE = {"1", "true", "yes", "on"}


class ConfigError(ValueError):
    """The PACS configuration cannot be used (one line, no secrets)."""


@dataclass(frozen=True)
class Endpoint:
    """One operator-configured PACS: its name, DICOMweb root, credentials, whether sending is allowed and whether
    sent series join the source's study (``same_study``; else a research study of the same patient)."""

    name: str
    url: str
    credentials: data.Credentials = field(default_factory=data.Credentials, repr=False)
    allow_send: bool = False
    same_study: bool = False

    def client(self) -> data.DicomWeb:
        """A :class:`data.DicomWeb` for this endpoint (credentials only to its origin; messages name it)."""
        return data.DicomWeb(self.url, self.credentials, label=f"{self.name!r}",
                             hint="the page's PACS credentials are set by its operator")


def _secret(entry: Mapping[str, Any], kind: str, environ: Mapping[str, str], where: str) -> str | None:
    """The value of ``<kind>_env`` (an environment variable) or ``<kind>_file`` (a file's stripped text)."""
    variable, path = entry.get(f"{kind}_env"), entry.get(f"{kind}_file")
    if variable and path:
        raise ConfigError(f"{where}: give {kind}_env or {kind}_file, not both")
    if variable:
        value = environ.get(str(variable))
        if not value:
            raise ConfigError(f"{where}: the environment variable {variable} ({kind}_env) is not set")
        return value
    if path:
        try:
            value = Path(str(path)).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read {kind}_file {path}: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"{where}: {kind}_file {path} is empty")
        return value
    return None


def _endpoint(entry: Any, index: int, environ: Mapping[str, str]) -> Endpoint:
    where = f"PACS configuration entry {index + 1}"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} is not a table of name, url, ...")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        extra = " (secrets go in environment variables or files: *_env, *_file)" if \
            {"password", "token", "user"} & set(unknown) else ""
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}{extra}")
    name, url = str(entry.get("name") or "").strip(), str(entry.get("url") or "").strip()
    if not name or not url:
        raise ConfigError(f"{where}: needs a name and a url")
    where = f"PACS {name!r}"
    user = entry.get("user_env") and environ.get(str(entry["user_env"]))
    if entry.get("user_env") and not user:
        raise ConfigError(f"{where}: the environment variable {entry['user_env']} (user_env) is not set")
    password, token = _secret(entry, "password", environ, where), _secret(entry, "token", environ, where)
    if token and (user or password):
        raise ConfigError(f"{where}: give a token or a user and password, not both")
    if bool(user) != bool(password):
        raise ConfigError(f"{where}: a user needs a password and a password a user")
    allow_send, same_study = entry.get("allow_send", False), entry.get("same_study", False)
    if not isinstance(allow_send, bool) or not isinstance(same_study, bool):
        raise ConfigError(f"{where}: allow_send and same_study must be true or false")
    endpoint = Endpoint(name, url, data.Credentials(user=user or None, password=password, token=token), allow_send,
                        same_study)
    try:
        endpoint.client()  # checks the URL (scheme, host, no credentials, query or fragment)
    except data.DicomWebError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return endpoint


def read_file(path: str | os.PathLike) -> list[Any]:
    """The raw entries of a TOML or JSON configuration file (its ``pacs`` list)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the PACS configuration {path}: {exc.strerror}") from None
    try:
        content = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"the PACS configuration {path} is not valid {path.suffix.lstrip('.').upper() or 'TOML'}: "
                          f"{str(exc).splitlines()[0]}") from None
    entries = content.get("pacs") if isinstance(content, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"the PACS configuration {path} needs a list 'pacs' of endpoints ([[pacs]] in TOML)")
    return entries


def configured(environ: Mapping[str, str] | None = None) -> list[Endpoint]:
    """Every endpoint of the configuration file and the ``SPARSECT_PACS_URL`` variables (none: an empty list)."""
    env = os.environ if environ is None else environ
    entries = read_file(env[CONFIG_VARIABLE]) if env.get(CONFIG_VARIABLE) else []
    endpoints = [_endpoint(entry, i, env) for i, entry in enumerate(entries)]
    if env.get(URL_VARIABLE):
        try:
            credentials = data.Credentials.from_env(env)
        except data.DicomWebError as exc:
            raise ConfigError(str(exc)) from None
        endpoint = Endpoint(env.get(NAME_VARIABLE) or "PACS", env[URL_VARIABLE], credentials,
                            env.get(SEND_VARIABLE, "").strip().lower() in _TRUE)
        try:
            endpoint.client()
        except data.DicomWebError as exc:
            raise ConfigError(f"{URL_VARIABLE}: {exc}") from None
        endpoints.append(endpoint)
    names = [e.name for e in endpoints]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"PACS names must be unique: {', '.join(duplicated)}")
    return endpoints


def by_name(name: str | None, environ: Mapping[str, str] | None = None) -> Endpoint | None:
    """The configured endpoint called ``name``, or None."""
    return next((e for e in configured(environ) if e.name == name), None)


__all__ = ["CONFIG_VARIABLE", "ConfigError", "Endpoint", "by_name", "configured", "read_file"]
