"""/etc/edgeml/serve.yml: what to serve and how."""

from dataclasses import dataclass, field
from typing import List, Optional

import yaml


class ConfigError(Exception):
    pass


@dataclass
class ModelConfig:
    name: str
    path: str  # the store's <model>/current directory
    file: str = "model.onnx"
    # A candidate version run beside this one on the same requests (shadow.py): its directory.
    shadow: Optional[str] = None
    shadow_tolerance: float = 0.001  # scores agree within this (absolute); labels exactly
    shadow_outputs: List[str] = field(default_factory=list)  # compare only these; []: all
    # Seconds after loading that the shadow is dropped on its own (None: kept until removed), so
    # that a deploy cut off mid-judging does not leave a candidate running for good.
    shadow_expires_after: Optional[float] = None
    # Names one judging (model_deploy writes the time it started): a new one is a new comparison,
    # also of a candidate that ran its time before (a deploy cut off, then run again).
    shadow_id: Optional[str] = None


@dataclass
class Config:  # pylint: disable=too-many-instance-attributes  # one field per setting
    bind: str = "127.0.0.1"
    port: int = 8080
    token_file: Optional[str] = None
    max_request_bytes: int = 16 << 20
    threads: int = 2
    intra_op_threads: int = 0  # 0: one per physical core, as onnxruntime's own default
    # onnxruntime's idle intra-op threads spin (busy-wait) for the next run, as its own default:
    # lower latency and more throughput, a core burnt meanwhile; false where CPU time or power
    # is scarcer than latency (docs/performance.md)
    intra_op_spinning: bool = True
    providers: List[str] = field(default_factory=lambda: ["auto"])
    models: List[ModelConfig] = field(default_factory=list)
    # Limits on what clients can hold (see connections.py). Seconds, counts and bytes.
    limit_concurrency: int = 128  # open connections or requests in progress; then 503 (not probes)
    keep_alive_timeout: float = 5.0  # an idle kept-alive connection is closed after this
    header_timeout: float = 10.0  # the request line and headers must arrive within this
    body_timeout: float = 30.0  # the whole body within this; also the longest wait on a client
    #                             that stops reading its answer
    max_header_bytes: int = 64 << 10  # request line and headers; larger: 431
    max_buffered_bytes: int = 0  # request bodies held at once, all requests; 0: 4 x max_request_bytes
    statistics: bool = True  # running statistics of live inputs and outputs (stats.py)
    # Data capture (capture.py): off unless capture_dir is set.
    capture_dir: Optional[str] = None
    capture_max_bytes: int = 64 << 20  # the whole directory; the oldest files go first
    capture_samples: int = 256  # requests kept per version and period (a reservoir sample)
    capture_max_sample_bytes: int = 64 << 10  # a request and its answer, as one JSON line
    capture_flush_seconds: float = 300.0  # a period: its sample is written, a new one begins

    @property
    def token(self):
        """The bearer token, or None without a token_file. A token_file that holds only
        whitespace is an error, not "no token": the server would otherwise run open."""
        if not self.token_file:
            return None
        try:
            with open(self.token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as exc:
            raise ConfigError(f"token_file: {exc}") from None
        if not token:
            raise ConfigError(f"token_file {self.token_file} is empty: write a token to it, or "
                              "remove token_file to serve without one (on loopback only)")
        return token

    @property
    def buffered_bytes(self):
        return self.max_buffered_bytes or 4 * self.max_request_bytes

    @property
    def max_elements(self):
        """Tensor elements one request may declare, all inputs together: every element takes at
        least one byte of the request (a BOOL or UINT8 in binary form), so a shape over this
        cannot be carried by a request the server would accept anyway."""
        return self.max_request_bytes


KEYS = {"bind", "port", "token_file", "max_request_bytes", "threads", "intra_op_threads", "intra_op_spinning",
        "providers", "models", "limit_concurrency", "keep_alive_timeout", "header_timeout",
        "body_timeout", "max_header_bytes", "max_buffered_bytes", "statistics", "capture_dir",
        "capture_max_bytes", "capture_samples", "capture_max_sample_bytes", "capture_flush_seconds"}
MODEL_KEYS = {"name", "path", "file", "shadow", "shadow_tolerance", "shadow_outputs", "shadow_expires_after", "shadow_id"}
POSITIVE = ("limit_concurrency", "keep_alive_timeout", "header_timeout", "body_timeout")


def _shadow_checked(path, model):
    where = f"{path}: model {model.name!r}"
    if model.shadow is not None and (not isinstance(model.shadow, str) or not model.shadow.startswith("/")):
        raise ConfigError(f"{where}: shadow must be an absolute path, got {model.shadow!r}")
    tolerance = model.shadow_tolerance
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) \
            or not 0 <= tolerance < float("inf"):
        raise ConfigError(f"{where}: shadow_tolerance must be a finite number >= 0, got {tolerance!r}")
    expires = model.shadow_expires_after
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, (int, float))
                                or not 0 < expires < float("inf")):
        raise ConfigError(f"{where}: shadow_expires_after must be a number of seconds > 0, got {expires!r}")
    if model.shadow_id is not None and (not isinstance(model.shadow_id, str) or not 0 < len(model.shadow_id) <= 100):
        raise ConfigError(f"{where}: shadow_id must be text of 1 to 100 characters, got {model.shadow_id!r}")
    if not isinstance(model.shadow_outputs, list) \
            or not all(isinstance(n, str) and n for n in model.shadow_outputs):
        raise ConfigError(f"{where}: shadow_outputs must be a list of output names, "
                          f"got {model.shadow_outputs!r}")
    return model


def load(path):
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping")
    unknown = set(data) - KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(KEYS)}")
    models = []
    for entry in data.pop("models", None) or []:
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("path"):
            raise ConfigError(f"{path}: each model needs a name and a path, got {entry!r}")
        unknown = set(entry) - MODEL_KEYS
        if unknown:
            raise ConfigError(f"{path}: model {entry['name']!r}: unknown keys {sorted(unknown)}; "
                              f"allowed: {sorted(MODEL_KEYS)}")
        models.append(_shadow_checked(path, ModelConfig(**entry)))
    names = [m.name for m in models]
    if len(names) != len(set(names)):
        raise ConfigError(f"{path}: model names must be unique, got {names}")
    config = Config(models=models, **data)
    if config.threads < 1 or config.max_request_bytes < 1024:
        raise ConfigError(f"{path}: threads must be >= 1 and max_request_bytes >= 1024")
    for key in POSITIVE:
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{path}: {key} must be a number above 0, got {value!r}")
    if config.capture_dir is not None and (not isinstance(config.capture_dir, str)
                                           or not config.capture_dir.startswith("/")):
        raise ConfigError(f"{path}: capture_dir must be an absolute path, got {config.capture_dir!r}")
    for key in ("capture_max_bytes", "capture_samples", "capture_max_sample_bytes", "capture_flush_seconds"):
        value = getattr(config, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigError(f"{path}: {key} must be a number above 0, got {value!r}")
    if not isinstance(config.intra_op_spinning, bool):
        raise ConfigError(f"{path}: intra_op_spinning must be true or false, got {config.intra_op_spinning!r}")
    if not isinstance(config.statistics, bool):
        raise ConfigError(f"{path}: statistics must be true or false, got {config.statistics!r}")
    if config.max_header_bytes < 1024:
        raise ConfigError(f"{path}: max_header_bytes must be >= 1024, got {config.max_header_bytes}")
    if config.max_buffered_bytes and config.max_buffered_bytes < config.max_request_bytes:
        raise ConfigError(f"{path}: max_buffered_bytes ({config.max_buffered_bytes}) must be 0 or "
                          f"at least max_request_bytes ({config.max_request_bytes})")
    return config
