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


@dataclass
class Config:
    bind: str = "127.0.0.1"
    port: int = 8080
    token_file: Optional[str] = None
    max_request_bytes: int = 16 << 20
    threads: int = 2
    intra_op_threads: int = 0  # 0: onnxruntime decides (one per core)
    providers: List[str] = field(default_factory=lambda: ["auto"])
    models: List[ModelConfig] = field(default_factory=list)

    @property
    def token(self):
        if not self.token_file:
            return None
        with open(self.token_file, encoding="utf-8") as handle:
            return handle.read().strip() or None


KEYS = {"bind", "port", "token_file", "max_request_bytes", "threads", "intra_op_threads",
        "providers", "models"}


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
        models.append(ModelConfig(**entry))
    names = [m.name for m in models]
    if len(names) != len(set(names)):
        raise ConfigError(f"{path}: model names must be unique, got {names}")
    config = Config(models=models, **data)
    if config.threads < 1 or config.max_request_bytes < 1024:
        raise ConfigError(f"{path}: threads must be >= 1 and max_request_bytes >= 1024")
    return config
