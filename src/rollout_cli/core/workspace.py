"""The workspace: `rollout.yaml`, validated whole into typed objects before anything runs.

Relative paths in `rollout.yaml` resolve against the workspace folder, so a
workspace can sit beside the app it controls (`../app/.env`).
"""

from __future__ import annotations

import math
import os
import re
import reprlib
import signal as signals
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollout_cli.core.result import Result
from rollout_cli.errors import InputError
from rollout_cli.io.atomic import atomic_write_text
from rollout_cli.io.textfile import KEY_FILE_LIMIT, read_text
from rollout_cli.io.yamlfile import read_yaml

if TYPE_CHECKING:
    from rollout_cli.core.result import Result

CONFIG_NAME = "rollout.yaml"
STATE_DIR = ".rollout"
FLAG_FORMATS = ("env", "json", "yaml", "flagd")
RUNTIMES = ("docker", "process", "swarm")

ENABLED_KEY = "LITELLM_ENABLED"
PERCENTAGE_KEY = "LITELLM_ROLLOUT_PERCENTAGE"


@dataclass(frozen=True)
class AppReload:
    """`app.reload`: how the app picks up new env and flags files (rollback level 1, advance)."""

    kind: str = "none"  # none (the app watches its files) | signal | restart | command
    container: str | None = None  # signal, restart
    pid_file: Path | None = None  # signal
    signal: str = "HUP"
    process: str | None = None  # signal by pid_file: text the process's command line must contain
    argv: tuple[str, ...] = ()  # command

    def describe(self) -> str:
        if self.kind == "signal":
            return f"send SIG{self.signal} to " + (f"container {self.container}" if self.container
                                                   else f"the pid in {self.pid_file}")
        if self.kind == "restart":
            return f"restart container {self.container}"
        if self.kind == "command":
            return "run " + " ".join(self.argv)
        return "nothing to do: the app watches its files (app.reload: none)"


@dataclass(frozen=True)
class AppConfig:
    env_file: Path
    flags_file: Path | None = None
    flags_format: str = "flagd"
    flag_key: str = "litellm-gateway"
    repo: Path | None = None
    router_paths: tuple[str, ...] = ()
    pre_gateway_ref: str | None = None
    integration_commits: tuple[str, ...] = ()
    integration_grep: str | None = None
    requires: tuple[str, ...] = ()  # capabilities every model must support (OpenRouter supported_parameters)
    reload: AppReload = AppReload()
    metrics_url: str | None = None  # the app's Prometheus endpoint with llm_requests_total (the observed share)
    probe: str | None = None  # a URL of the app that answers 2xx when its direct (non-gateway) path works


@dataclass(frozen=True)
class MasterKey:
    """The gateway master key and where it came from; its repr never shows the key."""

    value: str | None = field(repr=False)  # None when there is no usable key
    source: str  # "$LITELLM_MASTER_KEY", "key file PATH", ...: what to fix, never the key itself
    problem: str | None = None  # why the key found there cannot be used, in words that never quote it

    def require(self) -> str:
        """The key, or one InputError that says where to put it (or what is wrong with it)."""
        if self.problem:
            raise InputError(self.problem)
        if not self.value:
            raise InputError(f"no gateway master key: set {self.source} to the gateway's master key "
                             "(rollout never stores it)")
        return self.value


def master_key_problem(value: str, source: str) -> str | None:
    """Why `value` cannot be a master key, naming `source` and never the key; None when it can.

    The key travels in an HTTP header, which carries printable ASCII only: a
    carriage return (`export KEY=$(cat key.txt)` on a file with Windows line
    endings) or an accented letter would otherwise fail deep inside the HTTP
    client, in a message that quotes the header. We refuse rather than repair:
    a key trimmed here may not be the one the gateway holds.
    """
    for index, char in enumerate(value):
        if "!" <= char <= "~":
            continue
        what = {"\r": "a carriage return", "\n": "a line break", " ": "a space", "\t": "a tab"}.get(char)
        if what is None:
            what = "a non-ASCII character" if ord(char) > 0x7F else "a control character"
        hint = " (saved with Windows line endings? strip them: tr -d '\\r')" if char == "\r" else ""
        return (f"the master key in {source} has {what} (character {index + 1} of {len(value)}); "
                f"a key is printable ASCII without spaces or line breaks: fix it{hint}")
    return None


def read_key_file(path: Path) -> str:
    """A key file's text without its final line ending (LF, CRLF or CR): that is the file's, not the key's.

    FileNotFoundError when it is missing; InputError when it is not a small UTF-8 regular file.
    """
    text = read_text(path, limit=KEY_FILE_LIMIT, label="key file ")
    for ending in ("\r\n", "\n", "\r"):
        if text.endswith(ending):
            return text[: -len(ending)]
    return text


def _master_key(value: str, source: str) -> MasterKey:
    problem = master_key_problem(value, source)
    return MasterKey(None, source, problem) if problem else MasterKey(value, source)


@dataclass(frozen=True)
class GatewayConfig:
    url: str = "http://127.0.0.1:4000"
    master_key_env: str = "LITELLM_MASTER_KEY"
    master_key_file: Path | None = None
    container: str | None = None
    config: Path | None = None
    runtime: str = "docker"  # docker | process | swarm
    service: str | None = None  # the swarm service (runtime swarm)
    docker_host: str | None = None  # the swarm's engine (runtime swarm), before $DOCKER_HOST

    @cached_property
    def key(self) -> MasterKey:
        """Read once per command: from the environment, else from the key file; never stored elsewhere."""
        value = os.environ.get(self.master_key_env)
        if value:
            return _master_key(value, f"${self.master_key_env}")
        if self.master_key_file:
            source = f"key file {self.master_key_file}"
            try:
                value = read_key_file(self.master_key_file)
            except FileNotFoundError:
                value = None
            except InputError as exc:  # a FIFO, a folder, not UTF-8, too big: said, never read as a key
                return MasterKey(None, source, exc.message)
            if value:
                return _master_key(value, source)
        where = f"${self.master_key_env}" + (f" or key file {self.master_key_file}" if self.master_key_file else "")
        return MasterKey(None, where)


@dataclass(frozen=True)
class QuotaSettings:
    """`openrouter:`: the account's free quota a day, and the part of it rollout's own checks may spend."""

    daily_limit: int = 50  # below $10 of credits bought; 1000 above
    rollout_share: float = 0.20

    @property
    def allowance(self) -> int:
        """Requests rollout's own checks may send a day."""
        return math.floor(self.daily_limit * self.rollout_share + 1e-9)


METRICS_SOURCES = ("gateway", "prometheus")


@dataclass(frozen=True)
class MetricsSettings:
    """`metrics:`: where the window gates read their counters.

    `gateway` (the default): the gateway's own /metrics/, differenced against the
    samples `rollout watch` recorded. `prometheus`: range queries over the exact
    window against a Prometheus that scrapes the gateway and the app.
    """

    source: str = "gateway"
    url: str | None = None
    token_env: str | None = None  # the variable holding a bearer token for `url`; the token is never stored

    def token(self) -> str | None:
        return os.environ.get(self.token_env) or None if self.token_env else None


SINK_TYPES = ("webhook", "slack", "command")
SEVERITIES = ("info", "warning", "critical")  # in rising order: a sink takes its min_severity and above


@dataclass(frozen=True)
class NotifySink:
    """One entry of `notify:`: where events go. The URL and the signing secret are never held here.

    Both are secrets (a Slack incoming-webhook URL carries its token), so the
    file names only where to find them: `url_env` (a variable) or `url_file` (a
    file holding the URL), and `secret_env`. They are read at delivery time by
    `url()` and `secret()`; nothing rollout prints, logs or records quotes them.
    """

    type: str  # webhook | slack | command
    name: str  # as configured, else the type (numbered when two share it): what every record shows
    url_env: str | None = None
    url_file: Path | None = None
    secret_env: str | None = None  # webhook only: HMAC-SHA256 of the body in X-Rollout-Signature
    secret_file: Path | None = None  # or the secret from this file
    command: tuple[str, ...] = ()  # command only: argv; the event's JSON on its stdin
    min_severity: str = "info"

    def url(self) -> str | None:
        """The sink's URL from its variable or file, None when unset (a failed delivery, said so)."""
        if self.url_env:
            return os.environ.get(self.url_env, "").strip() or None
        if self.url_file:
            try:
                return read_key_file(self.url_file).strip() or None
            except (FileNotFoundError, InputError):
                return None
        return None

    def secret(self) -> str | None:
        """The signing secret from its variable or file; None when it is not set (nothing is sent unsigned)."""
        if self.secret_env:
            return os.environ.get(self.secret_env) or None
        if self.secret_file:
            try:
                return read_key_file(self.secret_file) or None
            except (FileNotFoundError, InputError):
                return None
        return None

    @property
    def signed(self) -> bool:
        return bool(self.secret_env or self.secret_file)

    def where(self) -> str:
        """Where the URL comes from, in words that never quote it."""
        return f"${self.url_env}" if self.url_env else f"url file {self.url_file}"

    def secret_where(self) -> str:
        return f"${self.secret_env}" if self.secret_env else f"secret file {self.secret_file}"

    def takes(self, severity: str) -> bool:
        return SEVERITIES.index(severity) >= SEVERITIES.index(self.min_severity)


@dataclass(frozen=True)
class Workspace:
    root: Path
    app: AppConfig
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    playbooks: Path | None = None
    openrouter: QuotaSettings = field(default_factory=QuotaSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    notify: tuple[NotifySink, ...] = ()

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR


# The variables rollout reads secrets from, whatever rollout.yaml says: a step or a notify command never
# inherits them (docs/PLAYBOOKS.md, "Secrets"); a `run` step gets one only by naming it in `env:`.
ALWAYS_SECRET = ("LITELLM_MASTER_KEY", "OPENROUTER_API_KEY")


def secret_variables(workspace: Workspace) -> frozenset[str]:
    """Every environment variable that holds a secret rollout knows of: the master key's, the OpenRouter
    key's, the Prometheus token's, and each notify sink's URL and signing secret."""
    names = {*ALWAYS_SECRET, workspace.gateway.master_key_env}
    if workspace.metrics.token_env:
        names.add(workspace.metrics.token_env)
    for sink in workspace.notify:
        names.update(name for name in (sink.url_env, sink.secret_env) if name)
    return frozenset(names)


def without_secrets(workspace: Workspace, keep: Iterable[str] = (),
                    environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a program rollout starts unattended: every secret variable left out but `keep`."""
    source = os.environ if environ is None else environ
    dropped = secret_variables(workspace) - set(keep)
    return {name: value for name, value in source.items() if name not in dropped}


def secret_values(workspace: Workspace) -> list[str]:
    """The secret values themselves, to blank wherever they might still appear (an error line, a summary)."""
    values = [os.environ.get(name, "") for name in secret_variables(workspace)]
    values.append(workspace.gateway.key.value or "")
    for sink in workspace.notify:
        values.append((sink.secret() or "") if sink.secret_file else "")
        url = sink.url() if sink.url_file else None  # a url_env's value is in `values` already
        values.append(url or "")
        for found in (url, os.environ.get(sink.url_env or "", "")):
            path = urllib.parse.urlsplit(found or "")
            values.append(path.path + (f"?{path.query}" if path.query else ""))  # Slack's token is its path
    return [value for value in values if len(value) >= 8]


# --- schema -----------------------------------------------------------------
# key -> (kind, required). Kinds: str, path, url, bool, list[str], format.

_APP_SCHEMA: dict[str, tuple[str, bool]] = {
    "env_file": ("path", True),
    "flags_file": ("path", False),
    "flags_format": ("format", False),
    "flag_key": ("str", False),
    "repo": ("path", False),
    "router_paths": ("list[str]", False),
    "pre_gateway_ref": ("str", False),
    "integration_commits": ("list[str]", False),
    "integration_grep": ("str", False),
    "requires": ("capabilities", False),
    "reload": ("reload", False),
    "metrics_url": ("url", False),
    "probe": ("url", False),
}
# OpenRouter's `supported_parameters` names an app may depend on, and `stream` (every model streams).
CAPABILITIES = (
    "tools", "tool_choice", "response_format", "structured_outputs", "stream", "reasoning", "include_reasoning",
    "seed", "logprobs", "top_logprobs", "logit_bias", "stop", "temperature", "top_p", "top_k", "min_p",
    "frequency_penalty", "presence_penalty", "repetition_penalty", "max_tokens", "web_search_options",
)
_GATEWAY_SCHEMA: dict[str, tuple[str, bool]] = {
    "url": ("url", False),
    "master_key_env": ("str", False),
    "master_key_file": ("path", False),
    "container": ("str", False),
    "config": ("path", False),
    "runtime": ("runtime", False),
    "service": ("str", False),
    "docker_host": ("str", False),
}
_TOP_KEYS = {"app", "gateway", "playbooks", "openrouter", "metrics", "notify"}


def resolve_root(option: str | os.PathLike[str] | None) -> Path:
    """`--workspace`, else `ROLLOUT_WORKSPACE`, else the current folder."""
    chosen = option or os.environ.get("ROLLOUT_WORKSPACE") or "."
    return Path(chosen).expanduser().absolute()


def load_workspace(root: Path) -> Workspace:
    """Read and validate `root/rollout.yaml`; every problem is named with its key path."""

    path = root / CONFIG_NAME
    if not path.exists():  # anything else that is there (a folder, a FIFO) is named by read_yaml
        raise InputError(
            f"no {CONFIG_NAME} in {root}; run `rollout init {root}` or pass --workspace DIR"
        )
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping with `app:` and `gateway:` at the top")
    unknown = sorted(set(raw) - _TOP_KEYS, key=str)  # key=str: YAML keys may be numbers too
    if unknown:
        raise InputError(
            f"{path}: unknown key '{unknown[0]}' (known: {', '.join(sorted(_TOP_KEYS))})"
        )
    if "app" not in raw:
        raise InputError(f"{path}: missing required key 'app'")
    app = _section(path, root, "app", raw["app"], _APP_SCHEMA)
    gateway_raw = raw.get("gateway")
    gateway = _section(path, root, "gateway", {} if gateway_raw is None else gateway_raw, _GATEWAY_SCHEMA)
    _check_runtime(path, gateway)
    playbooks = raw.get("playbooks")
    if playbooks is not None:
        playbooks = _convert(path, root, "playbooks", "path", playbooks)
    for key in ("router_paths", "integration_commits", "requires"):
        if key in app:
            app[key] = tuple(app[key])
    return Workspace(
        root=root,
        app=AppConfig(**app),
        gateway=GatewayConfig(**gateway),
        playbooks=playbooks,
        openrouter=_openrouter(path, raw.get("openrouter")),
        metrics=_metrics(path, root, raw.get("metrics")),
        notify=_notify(path, root, raw.get("notify")),
    )


def _check_runtime(path: Path, gateway: dict[str, Any]) -> None:
    """`gateway.service` goes with `runtime: swarm`, and only there."""
    runtime = gateway.get("runtime", "docker")
    if runtime == "swarm" and not gateway.get("service"):
        raise InputError(f"{path}: 'gateway.runtime' is swarm but 'gateway.service' is missing; "
                         "name the gateway's swarm service (docker service ls)")
    if runtime != "swarm" and gateway.get("service"):
        raise InputError(f"{path}: 'gateway.service' is set but 'gateway.runtime' is {runtime}; "
                         "set gateway.runtime: swarm, or remove gateway.service")


_SINK_KEYS = ("type", "name", "url_env", "url_file", "secret_env", "secret_file", "command", "min_severity")


def _notify(path: Path, root: Path, raw: Any) -> tuple[NotifySink, ...]:
    """`notify: [{type: webhook|slack|command, name, url_env|url_file, secret_env, command, min_severity}]`."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InputError(f"{path}: 'notify' must be a list of sinks, got {_kind(raw)}; "
                         "e.g. notify: [{type: slack, url_env: SLACK_WEBHOOK_URL}]")
    sinks = [_sink(path, root, f"notify[{index}]", entry) for index, entry in enumerate(raw)]
    names = [sink.name for sink in sinks]
    for index, sink in enumerate(sinks):
        if "name" not in raw[index] and names.count(sink.name) > 1:  # two unnamed slacks: slack-1, slack-2
            sinks[index] = replace(sink, name=f"{sink.name}-{names[:index + 1].count(sink.name)}")
    names = [sink.name for sink in sinks]
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice is not None:
        raise InputError(f"{path}: two sinks in 'notify' are named {twice!r}; give each its own name")
    return tuple(sinks)


def _sink(path: Path, root: Path, key: str, raw: Any) -> NotifySink:
    if not isinstance(raw, dict):
        raise InputError(f"{path}: '{key}' must be a mapping such as {{type: webhook, url_env: VAR}}, got {_kind(raw)}")
    unknown = sorted(set(raw) - set(_SINK_KEYS), key=str)
    if unknown:
        hint = " (a URL is a secret: name the variable that holds it with url_env)" if unknown[0] == "url" else ""
        raise InputError(f"{path}: unknown key '{key}.{unknown[0]}' (known: {', '.join(_SINK_KEYS)}){hint}")
    kind = raw.get("type")
    if kind not in SINK_TYPES:
        raise InputError(f"{path}: '{key}.type' is {_shown(kind)}; use one of {', '.join(SINK_TYPES)}")
    severity = raw.get("min_severity", "info")
    if severity not in SEVERITIES:
        raise InputError(f"{path}: '{key}.min_severity' is {_shown(severity)}; use one of {', '.join(SEVERITIES)}")
    values = {name: _convert(path, root, f"{key}.{name}", "str", raw[name])
              for name in ("name", "url_env", "secret_env") if raw.get(name) is not None}
    if isinstance(raw.get("url_file"), str) and "://" in raw["url_file"]:
        raise InputError(f"{path}: '{key}.url_file' holds a URL, not a path (value not shown); write the URL into a "
                         "file only you can read and name that file here, then remove the URL from rollout.yaml")
    files = {name: _convert(path, root, f"{key}.{name}", "path", raw[name])
             for name in ("url_file", "secret_file") if raw.get(name) is not None}
    url_file = files.get("url_file")
    command = tuple(_convert(path, root, f"{key}.command", "list[str]", raw["command"])) if "command" in raw else ()
    if kind == "command":
        extra = next((name for name in ("url_env", "url_file", "secret_env", "secret_file") if name in raw), None)
        if extra:
            raise InputError(f"{path}: '{key}.{extra}' is for webhook and slack sinks; a command sink takes only 'command'")
        if not command or not all(command):
            raise InputError(f"{path}: '{key}.command' must be a non-empty list such as [/usr/local/bin/page, --team, ops]")
    else:
        if command:
            raise InputError(f"{path}: '{key}.command' is for command sinks; a {kind} sink takes url_env or url_file")
        if ("url_env" in values) == (url_file is not None):
            raise InputError(f"{path}: '{key}' needs exactly one of url_env (a variable holding the URL) or url_file "
                             "(a file holding it); the URL itself never goes in rollout.yaml")
        signing = [name for name in ("secret_env", "secret_file") if name in values or name in files]
        if signing and kind != "webhook":
            raise InputError(f"{path}: '{key}.{signing[0]}' signs webhook bodies; a slack sink takes no secret")
        if len(signing) > 1:
            raise InputError(f"{path}: '{key}' has both secret_env and secret_file; keep one")
    sink = NotifySink(kind, values.get("name") or kind, values.get("url_env"), url_file, values.get("secret_env"),
                      files.get("secret_file"), command, severity)
    if kind != "command":
        _check_sink_url(path, key, sink)
    return sink


def _check_sink_url(path: Path, key: str, sink: NotifySink) -> None:
    """A URL that is there must be one (checked now: nothing starts on a bad one); an unset one fails at delivery.

    The message names the variable or file, never the URL: it carries a token.
    """
    url = sink.url()
    if url is None:
        return
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise InputError(f"{path}: '{key}' ({sink.name}): {sink.where()} holds no http:// or https:// URL "
                         "(value not shown); set it to the sink's URL")


def _metrics(path: Path, root: Path, raw: Any) -> MetricsSettings:
    """`metrics: {source: prometheus, url: http://127.0.0.1:9090, token_env: VAR}`."""
    if raw is None:
        return MetricsSettings()
    if not isinstance(raw, dict):
        raise InputError(f"{path}: 'metrics' must be a mapping, got {_kind(raw)}")
    known = ("source", "url", "token_env")
    unknown = sorted(set(raw) - set(known), key=str)
    if unknown:
        raise InputError(f"{path}: unknown key 'metrics.{unknown[0]}' (known: {', '.join(known)})")
    source = raw.get("source", "prometheus" if raw.get("url") else "gateway")
    if source not in METRICS_SOURCES:
        raise InputError(f"{path}: 'metrics.source' is {_shown(source)}; use one of {', '.join(METRICS_SOURCES)}")
    url = _convert(path, root, "metrics.url", "url", raw["url"]) if raw.get("url") is not None else None
    if source == "prometheus" and url is None:
        raise InputError(f"{path}: 'metrics.source' is prometheus but 'metrics.url' is missing; "
                         "add the Prometheus server's URL, e.g. http://127.0.0.1:9090")
    token_env = raw.get("token_env")
    if token_env is not None:
        token_env = _convert(path, root, "metrics.token_env", "str", token_env)
    return MetricsSettings(source, url.rstrip("/") if url else None, token_env)


def _openrouter(path: Path, raw: Any) -> QuotaSettings:
    """`openrouter: {daily_limit: 50, rollout_share: 0.2}`: the free quota and rollout's part of it."""
    if raw is None:
        return QuotaSettings()
    if not isinstance(raw, dict):
        raise InputError(f"{path}: 'openrouter' must be a mapping, got {_kind(raw)}")
    known = ("daily_limit", "rollout_share")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise InputError(f"{path}: unknown key 'openrouter.{unknown[0]}' (known: {', '.join(known)})")
    limit = raw.get("daily_limit", QuotaSettings.daily_limit)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InputError(f"{path}: 'openrouter.daily_limit' must be a whole number >= 1 "
                         f"(50 below $10 of credits, 1000 above), got {limit!r}")
    share = raw.get("rollout_share", QuotaSettings.rollout_share)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise InputError(f"{path}: 'openrouter.rollout_share' must be a fraction in (0, 1] (0.2 = 20%), "
                         f"got {share!r}")
    return QuotaSettings(limit, float(share))


def _section(
    path: Path, root: Path, name: str, raw: Any, schema: dict[str, tuple[str, bool]]
) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InputError(f"{path}: '{name}' must be a mapping, got {_kind(raw)}")
    unknown = sorted(set(raw) - set(schema), key=str)
    if unknown:
        raise InputError(
            f"{path}: unknown key '{name}.{unknown[0]}' (known: {', '.join(schema)})"
        )
    values: dict[str, Any] = {}
    for key, (kind, required) in schema.items():
        if raw.get(key) is None:
            if required:
                raise InputError(f"{path}: missing required key '{name}.{key}'")
            continue
        values[key] = _convert(path, root, f"{name}.{key}", kind, raw[key])
    return values


def _convert(path: Path, root: Path, key: str, kind: str, value: Any) -> Any:
    def wrong(expected: str) -> InputError:
        return InputError(f"{path}: '{key}' must be {expected}, got {_kind(value)} {_shown(value)}")

    if kind == "reload":
        return _reload(path, root, key, value)
    if kind in ("list[str]", "capabilities"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong("a list of strings")
        if any("\0" in v for v in value):
            raise InputError(f"{path}: '{key}' holds a NUL character; remove it")
        for item in value if kind == "capabilities" else []:
            if item not in CAPABILITIES:
                raise InputError(f"{path}: '{key}' names unknown capability {item!r}; use any of {', '.join(CAPABILITIES)}")
        return list(value)
    if not isinstance(value, str) or not value.strip():
        raise wrong("a non-empty string")
    if "\0" in value:  # no path, ref or name can hold one; the OS would refuse it later, less clearly
        raise InputError(f"{path}: '{key}' holds a NUL character; remove it")
    place = re.sub(r"\[\d+\]", "", key)  # notify[2].url_env -> notify.url_env
    if place in _KEY_PLACES and _misplaced_key(kind, value):
        raise InputError(f"{path}: '{key}' {_KEY_PLACES[place]}")
    if kind == "path":
        try:
            return (root / Path(value).expanduser()).resolve()
        except RuntimeError:  # `~name/...` for a user this machine does not have
            user = value[1:].split("/", 1)[0]
            raise InputError(
                f"{path}: '{key}' starts with ~{user}, but there is no user {user!r} here; write the full path"
            ) from None
    if kind == "url" and not value.startswith(("http://", "https://")):
        raise wrong("an http:// or https:// URL")
    if kind == "format" and value not in FLAG_FORMATS:
        raise InputError(f"{path}: '{key}' is '{value}'; use one of {', '.join(FLAG_FORMATS)}")
    if kind == "runtime" and value not in RUNTIMES:
        raise InputError(f"{path}: '{key}' is '{value}'; use one of {', '.join(RUNTIMES)}")
    return value


# Where an operator may paste the master key by mistake, and what belongs there instead. The message
# never quotes the value: it is a secret, and it would reach logs, CI output and the audit trail.
_KEY_PLACES = {
    "gateway.master_key_file": "holds what looks like a key, not a path (value not shown); put the key in a file "
                               "only you can read and name that file here, then remove the key from rollout.yaml",
    "gateway.master_key_env": "must be the name of an environment variable (letters, digits, _), not a key (value "
                              "not shown); name the variable that holds the key, then remove it from rollout.yaml",
    **{f"notify.{name}": f"must be the name of an environment variable (letters, digits, _), not a {what} (value not "
                          f"shown); name the variable that holds it, then remove the {what} from rollout.yaml"
       for name, what in (("url_env", "URL"), ("secret_env", "secret"))},
    "metrics.token_env": "must be the name of an environment variable (letters, digits, _), not a token (value "
                         "not shown); name the variable that holds the token, then remove it from rollout.yaml",
}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET = re.compile(r"(?i:sk-)\S*|(?=[^/.]*\d)(?=[^/.]*[A-Za-z])[A-Za-z0-9_\-]{32,}")


def _misplaced_key(kind: str, value: str) -> bool:
    """A variable name that is no name, or a path that reads as a key (sk-..., or a long random token)."""
    if kind == "str":
        return not _ENV_NAME.fullmatch(value)
    return bool(_SECRET.fullmatch(value.strip()))


def _shown(value: Any) -> str:
    """A value as the operator wrote it, cut short: a message quotes it, never dumps it."""
    return _SHORT.repr(value)


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 60, 60


_RELOAD_KEYS = {"signal": {"container", "pid_file", "signal", "process"}, "restart": {"container"}}


def _reload(path: Path, root: Path, key: str, value: Any) -> AppReload:
    """none | {signal: {container|pid_file, signal}} | {restart: {container}} | {command: [argv]}."""
    usage = ("none, {signal: {container: NAME or pid_file: PATH, signal: HUP}}, "
             "{restart: {container: NAME}} or {command: [PROGRAM, ARG...]}")
    if value == "none":
        return AppReload()
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("signal", "restart", "command"):
        raise InputError(f"{path}: '{key}' must be one of {usage}, got {value!r}")
    kind, spec = next(iter(value.items()))
    if kind == "command":
        if not isinstance(spec, list) or not spec or not all(isinstance(v, str) and v for v in spec):
            raise InputError(f"{path}: '{key}.command' must be a non-empty list of strings, got {spec!r}")
        return AppReload("command", argv=tuple(spec))
    if not isinstance(spec, dict):
        raise InputError(f"{path}: '{key}.{kind}' must be a mapping, got {_kind(spec)} {spec!r}")
    unknown = sorted(set(spec) - _RELOAD_KEYS[kind])
    if unknown:
        raise InputError(f"{path}: unknown key '{key}.{kind}.{unknown[0]}' (known: {', '.join(sorted(_RELOAD_KEYS[kind]))})")
    for field_name in spec:
        if not isinstance(spec[field_name], str) or not spec[field_name].strip():
            raise InputError(f"{path}: '{key}.{kind}.{field_name}' must be a non-empty string, got {spec[field_name]!r}")
    if kind == "restart":
        if "container" not in spec:
            raise InputError(f"{path}: missing required key '{key}.restart.container'")
        return AppReload("restart", container=spec["container"])
    if ("container" in spec) == ("pid_file" in spec):
        raise InputError(f"{path}: '{key}.signal' needs exactly one of container or pid_file")
    if "process" in spec and "pid_file" not in spec:
        raise InputError(f"{path}: '{key}.signal.process' checks the process a pid_file names; it needs pid_file")
    name = spec.get("signal", "HUP").upper().removeprefix("SIG")
    if not hasattr(signals, "SIG" + name):
        raise InputError(f"{path}: '{key}.signal.signal' is {spec['signal']!r}; use a signal name such as HUP or USR1")
    pid_file = (root / Path(spec["pid_file"]).expanduser()).resolve() if "pid_file" in spec else None
    return AppReload("signal", container=spec.get("container"), pid_file=pid_file, signal=name,
                     process=spec.get("process"))


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


INIT_TEMPLATE = """\
# rollout workspace: what `rollout` reads and writes.
# Relative paths resolve against this folder. Docs: docs/PLAYBOOKS.md, docs/SETUP.md.
app:
  env_file: ../app/.env              # dotenv file the app reads (LITELLM_ENABLED, LITELLM_ROLLOUT_PERCENTAGE)
  flags_file: ../app/flags.json      # optional; must agree with env_file
  flags_format: flagd                # env | json | yaml | flagd (OpenFeature, fractional targeting)
  flag_key: litellm-gateway          # flag name (flagd), dotted key path (json/yaml) or variable (env)
  repo: ../app                       # git repo of the app (rollback levels 2 and 4)
  router_paths: [server/model-router.ts]  # level 2 restores these paths...
  pre_gateway_ref: pre-gateway       # ...from this tag or commit
  integration_commits: []            # level 4 reverts these, newest first (or, when empty:)
  integration_grep: "LiteLLM gateway"  # commits whose message matches
  # requires: [tools, response_format]  # capabilities every model must support (`rollout models` checks)
  reload: none                       # how the app re-reads its files: none (it watches them),
                                     # {signal: {container: NAME | pid_file: PATH, signal: HUP}},
                                     # {restart: {container: NAME}} or {command: [PROGRAM, ARG...]}
  # metrics_url: http://127.0.0.1:9464/metrics  # the app's llm_requests_total counter: the observed share
  # probe: http://127.0.0.1:3000/healthz/llm-direct  # answers 2xx when the app's direct path works (level 3)
gateway:
  url: http://127.0.0.1:4000
  master_key_env: LITELLM_MASTER_KEY # the key is read from this variable, never stored
  # master_key_file: ./.rollout/master.key  # or from this file (mode 0600)
  runtime: docker                    # docker | process (a litellm rollout started here; the sandbox's)
                                     # | swarm (a replicated service: deploy/docker-stack.yml)
  container: litellm                 # container name or compose service name (level 3)
  # service: rollout-gateway_litellm # runtime swarm: the service's name (docker service ls)
  # docker_host: unix:///var/run/docker-swarm.sock  # runtime swarm: its manager's engine (default $DOCKER_HOST)
  config: ../gateway/litellm-config.yaml
# playbooks: ./playbooks             # optional: overrides the packaged defaults
# openrouter:                        # the free tier's quota, shared by the app and rollout's own checks
#   daily_limit: 50                  # requests a day: 50 below $10 of credits bought, 1000 above
#   rollout_share: 0.2               # the part of it rollout's checks may spend (`rollout quota`)
# metrics:                           # where the window gates read their counters (docs/SETUP.md)
#   source: prometheus               # gateway (default: its /metrics/ + `rollout watch` samples) | prometheus
#   url: http://127.0.0.1:9090       # a Prometheus scraping the gateway and the app
#   token_env: PROMETHEUS_TOKEN      # optional: a bearer token from this variable
# notify:                            # who hears of advances and rollbacks (docs/SETUP.md, Notifications)
#   - type: slack                    # webhook (signed JSON) | slack | command (the JSON on its stdin)
#     url_env: SLACK_WEBHOOK_URL     # the URL is a secret: read from this variable (or url_file), never written here
#     min_severity: critical         # info | warning | critical
"""


_KERNEL_FILE_SYSTEMS = (Path("/proc"), Path("/sys"))


@dataclass(frozen=True)
class InitPayload:
    """`rollout init`: the file written."""

    path: str
    overwritten: bool

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "overwritten": self.overwritten}


def init_workspace(root: Path, *, force: bool = False) -> Result[InitPayload]:
    """Write a commented rollout.yaml; an existing one is kept unless `force`."""

    path = root / CONFIG_NAME
    real = root.resolve()
    kernel = next((fs for fs in _KERNEL_FILE_SYSTEMS if real.is_relative_to(fs)), None)
    if kernel is not None:
        raise InputError(f"{root} is in {kernel}, the kernel's view of the system, not a folder for files; "
                         "choose another DIR")
    if path.exists() and not force:
        raise InputError(f"{path} already exists; pass --force to overwrite it")
    # The nearest existing folder on the way: a file there would fail the mkdir half-way, after creating some.
    existing = next(p for p in (real, *real.parents) if p.exists())
    if not existing.is_dir():
        under = "" if existing == real else f", so {root} cannot be one"
        raise InputError(f"{existing} is not a folder{under}; choose another DIR")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder {root}: {exc.strerror or exc}; choose another DIR") from None
    atomic_write_text(path, INIT_TEMPLATE)
    return Result(
        "init",
        InitPayload(str(path), force),
        [f"wrote {path}; edit its paths, then run `rollout -w {root} status`"],
    )
