"""Server settings, from (highest first) command-line flags, ``PROMPTLEARNING_SERVE_*`` environment
variables and a YAML file (``--config``), through ``pydantic-settings``."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from promptlearning.errors import PromptLearningError

ENV_PREFIX = "PROMPTLEARNING_SERVE_"


class ServerSettings(BaseSettings):
    """Everything ``promptlearning serve`` can be told; each field is also a flag and a variable."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", yaml_file=None)

    # what is served
    model: str | None = Field(
        "smollm2-135m-instruct",
        description="model to serve (embedded name, HF dir, .gguf); 'none' serves programs only",
    )
    served_model_name: str | None = Field(None, description="its name in /v1/models (default: the model argument)")
    backend: str | None = Field(None, description="backend of the model (default: chosen from the model)")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    dtype: str = Field("auto", description="auto, float32, bfloat16 or float16")
    program: dict[str, str] = Field(default_factory=dict, description="saved prompt programs, NAME=DIR (repeatable)")
    embedding_model: str | None = Field("minilm-l6", description="model of /v1/embeddings ('none': no embeddings)")
    ui_runs: Path = Field(Path("runs"), description="root of the run directories the web UI at /ui shows")
    # network and security
    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(8000, ge=0, le=65535, description="port (0: any free port)")
    api_key: list[str] = Field(default_factory=list, description="accepted API key (repeatable)")
    api_keys_file: Path | None = Field(
        None,
        description="file of sha256 hashes of accepted keys, one per line (`promptlearning keygen FILE` makes one)",
    )
    no_auth: bool = Field(False, description="serve without API keys (only when bound to loopback)")
    # batching and limits
    max_batch_size: int = Field(
        64, ge=1, description="most requests' items in one batched call (the model splits it into its own batches)"
    )
    batch_wait_ms: float = Field(10.0, ge=0, description="how long a batch waits for more requests (ms)")
    max_queue: int = Field(256, ge=1, description="requests waiting (beyond a running batch) before 429")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="largest request body")
    max_prompt_tokens: int | None = Field(None, ge=1, description="longest prompt (default: the model's context)")
    max_request_tokens: int = Field(
        200_000, ge=1, description="most tokens of model work one request may cause (prompts scored + generated)"
    )
    max_tokens_limit: int = Field(1024, ge=1, description="largest max_tokens a request may ask for")
    max_n: int = Field(16, ge=1, description="largest n (samples per prompt)")
    max_inputs: int = Field(64, ge=1, description="most prompts or inputs in one request")
    requests_per_minute: int = Field(0, ge=0, description="per-key request rate limit (0: none)")
    tokens_per_minute: int = Field(0, ge=0, description="per-key token rate limit, prompt + max_tokens (0: none)")
    # operations
    log_content: bool = Field(False, description="log prompts and outputs (e-mails, phones, keys masked)")
    shutdown_grace_seconds: float = Field(30.0, ge=0, description="time in-flight requests get to finish")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, YamlConfigSettingsSource(settings_cls)

    @field_validator("model", "embedding_model")
    @classmethod
    def _none_word(cls, value: str | None) -> str | None:
        return None if value is None or value.strip().lower() in ("", "none") else value

    @field_validator("api_key")
    @classmethod
    def _real_keys(cls, keys: list[str]) -> list[str]:
        if any(not key.strip() for key in keys):
            raise ValueError("--api-key is empty: give a real key (`promptlearning keygen FILE` makes one)")
        return keys

    @model_validator(mode="after")
    def _check(self) -> ServerSettings:
        if self.no_auth and not is_loopback(self.host):
            raise ValueError(f"--no-auth is only accepted on a loopback address, not {self.host}; give --api-key")
        if not self.no_auth and not self.api_key and self.api_keys_file is None:
            raise ValueError(
                "the server needs API keys: give --api-key KEY or --api-keys-file FILE "
                "(or --no-auth on 127.0.0.1 for local experiments)"
            )
        if self.ui_runs.exists() and not self.ui_runs.is_dir():
            raise ValueError(f"--ui-runs {self.ui_runs} is a file; name the folder of run directories")
        if self.model is None and not self.program:
            raise ValueError("nothing to serve: give a model or at least one --program NAME=DIR")
        if self.api_keys_file is not None:
            from promptlearning.serving.auth import KeyStore

            KeyStore(keys_file=self.api_keys_file)  # a missing file or one of plain keys fails now, before serving
        return self


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(config_file: str | Path | None = None, **flags: Any) -> ServerSettings:
    """Settings from flags (``None`` values are left to the environment / file / defaults)."""
    from pydantic import ValidationError

    given = {key: value for key, value in flags.items() if value is not None and value != [] and value != {}}
    try:
        if config_file is not None:
            path = Path(config_file)
            if not path.is_file():
                raise PromptLearningError(f"server config file {path} does not exist")
            _check_config_file(path)

            class _FromFile(ServerSettings):
                model_config = SettingsConfigDict(yaml_file=str(path))

            return _FromFile(**given)
        return ServerSettings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise PromptLearningError(f"bad server settings: {problems}") from None


def _check_config_file(path: Path) -> None:
    """A ``--config`` file must be a YAML mapping of settings (pydantic-settings would crash on others)."""
    import yaml

    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PromptLearningError(f"server config file {path} is not valid YAML: {first}") from None
    if content is not None and not isinstance(content, dict):
        raise PromptLearningError(
            f"server config file {path} must be a mapping of settings (e.g. `port: 8000`), "
            f"not a {type(content).__name__}"
        )
