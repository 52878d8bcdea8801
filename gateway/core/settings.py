"""The gateway's settings: one typed class read from the environment (prefix ``GATEWAY_``).

``CLOUDINARY_URL`` and ``REDIS_URL`` are read without the prefix (the names their own tools use). Every field has
an embedded default, so ``make serve`` runs with no configuration: local storage under ``./data``, Triton on
127.0.0.1:8001, jobs in ``./data/jobs.sqlite3``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from deepfake_core import constants as C
from deepfake_core.paths import BUNDLED_CHECKPOINT
from gateway.services.storage import DEFAULT_CHUNK_SIZE, DEFAULT_FOLDER, DEFAULT_LARGE_THRESHOLD_BYTES

MB = 1_000_000


class Settings(BaseSettings):
    """Everything the gateway can be told; see the field descriptions (also shown by ``python -m gateway --help``)."""

    model_config = SettingsConfigDict(
        env_prefix="GATEWAY_",
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
        hide_input_in_errors=True,  # errors must not echo CLOUDINARY_URL's (or REDIS_URL's) secret
    )

    # Serving
    host: str = Field(default="127.0.0.1", description="address uvicorn binds")
    port: int = Field(default=5050, ge=0, le=65535, description="port uvicorn binds")
    keep_alive_s: int = Field(
        default=75,
        ge=1,
        description="idle HTTP keep-alive kept open (uvicorn's 5 s default races clients and load balancers that "
        "reuse a connection after a few seconds' pause: the server closes it as the next request is sent)",
    )
    public_base_url: str = Field(
        default="", description="absolute base of output_url with local storage (default: http://HOST:PORT)"
    )

    # Access control (docs/deploy.md, "Access control")
    auth: Literal["keys", "open"] = Field(
        default="keys",
        description="keys: every /api/v1 route but health and progress needs an API key (python -m gateway.keys); "
        "open: no key, for a trusted loopback only (logged as a warning at start)",
    )
    api_keys_file: Path | None = Field(
        default=None, description="the key store written by python -m gateway.keys (default: DATA_DIR/api-keys.json)"
    )
    rate_per_minute: int = Field(
        default=60, ge=0, description="requests per minute per API key unless the key has its own (0: no limit)"
    )
    open_rate_per_minute: int = Field(
        default=120, ge=0, description="with auth=open: requests per minute per client address (0: no limit)"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins allowed to call the API from a browser (comma-separated; empty: CORS off)",
    )

    # Triton
    triton_grpc_url: str = Field(default="127.0.0.1:8001", description="Triton's gRPC address host:port")
    triton_timeout_s: float = Field(default=120.0, gt=0, description="deadline of one inference call")

    # Storage
    storage: Literal["auto", "local", "cloudinary"] = Field(
        default="auto", description="auto: Cloudinary when CLOUDINARY_URL is set, else local files served under /media"
    )
    data_dir: Path = Field(default=Path("data"), description="local storage (media/) and temporary files (tmp/)")
    cloudinary_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("CLOUDINARY_URL", "cloudinary_url"),
        description="cloudinary://KEY:SECRET@CLOUD[?upload_prefix=...]",
    )
    cloudinary_folder: str = Field(default=DEFAULT_FOLDER, description="Cloudinary folder of the overlay videos")
    cloudinary_large_threshold_bytes: int = Field(
        default=DEFAULT_LARGE_THRESHOLD_BYTES, gt=0, description="upload_large (chunked) from this size"
    )
    cloudinary_chunk_size: int = Field(
        default=DEFAULT_CHUNK_SIZE, gt=0, description="part size of upload_large (>= 5 MiB)"
    )
    cloudinary_retries: int = Field(
        default=3, ge=1, description="attempts per upload (5xx and network errors are retried)"
    )
    cloudinary_backoff_s: float = Field(default=0.5, ge=0, description="first wait between attempts, doubled each time")

    # Limits
    max_download_bytes: int = Field(default=200 * MB, gt=0, description="largest video fetched from a URL")
    max_upload_bytes: int = Field(default=200 * MB, gt=0, description="largest uploaded video")
    # The product's video limits (deepfake_core.constants.VIDEO_MAX_*, Triton's video_decode's too): lower them here
    # for one gateway; higher ones are refused by Triton.
    max_duration_s: float = Field(default=C.VIDEO_MAX_DURATION_S, gt=0, description="longest video accepted")
    max_pixels: int = Field(default=C.VIDEO_MAX_PIXELS, gt=0, description="largest frame (width x height) accepted")
    max_frames: int = Field(default=C.VIDEO_MAX_FRAMES, gt=0, description="most frames accepted")
    min_frames: int = Field(default=2, ge=1, description="fewest frames accepted (one frame is a still image)")
    download_timeout_s: float = Field(default=60.0, gt=0, description="whole download, all redirects included")
    connect_timeout_s: float = Field(default=10.0, gt=0, description="TCP/TLS connect of one download hop")
    max_redirects: int = Field(default=3, ge=0, le=10, description="redirects followed, each re-checked")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="hostnames, IPs or CIDRs admitted even when private/loopback (comma-separated in the env)",
    )
    download_allowlist_only: bool = Field(
        default=False,
        description="fetch only from allowed_hosts (by hostname or IP, checked before any DNS lookup); public "
        "hosts are refused too, as when a platform fetches only from its own buckets",
    )
    max_concurrent_predictions: int = Field(default=2, ge=1, description="predictions running at once")
    max_queued_predictions: int = Field(default=8, ge=0, description="predictions waiting for a slot; beyond that 429")
    queue_timeout_s: float = Field(default=30.0, gt=0, description="longest wait for a slot before 503")

    # Jobs (POST /api/v1/jobs) and batches
    redis_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("REDIS_URL", "redis_url"),
        description="redis://[:PASSWORD@]HOST:PORT/DB: jobs queued in Redis, shared by every replica (default: SQLite)",
    )
    jobs_db_path: Path | None = Field(
        default=None, description="SQLite file of the jobs (default: DATA_DIR/jobs.sqlite3)"
    )
    jobs_redis_prefix: str = Field(default="gateway:jobs:", description="prefix of the Redis keys of the jobs")
    job_workers: int = Field(default=1, ge=0, description="jobs this replica runs at once (0: it only queues them)")
    job_max_attempts: int = Field(default=3, ge=1, description="runs of a job before it fails (retries + 1)")
    job_lease_s: float = Field(
        default=60.0, gt=0, description="a running job not heartbeated for this long is given to another worker"
    )
    job_retry_backoff_s: float = Field(default=5.0, ge=0, description="wait before a retry, doubled each attempt")
    job_poll_interval_s: float = Field(default=0.5, gt=0, description="how often idle workers look for jobs")
    max_queued_jobs: int = Field(default=1000, ge=1, description="jobs waiting at once; beyond that 429")
    max_job_urls: int = Field(default=100, ge=1, description="URLs in one POST /api/v1/jobs")
    max_batch_urls: int = Field(default=8, ge=1, description="URLs in one POST /api/v1/predict/batch (synchronous)")
    job_result_ttl_s: float = Field(
        default=7 * 86400.0, gt=0, description="finished jobs and their local overlay videos are removed after this"
    )
    retention_interval_s: float = Field(default=300.0, gt=0, description="how often old jobs are looked for")
    callback_retries: int = Field(default=4, ge=1, description="attempts to POST a job's result to its callback_url")
    callback_backoff_s: float = Field(default=1.0, ge=0, description="first wait between callback attempts, doubled")
    callback_timeout_s: float = Field(default=10.0, gt=0, description="deadline of one callback POST")

    # Analysis and output
    num_frames: int = Field(default=C.NUM_FRAMES, ge=1, le=C.MAX_NUM_FRAMES, description="frames analysed by default")
    heatmap: bool = Field(default=True, description="Grad-CAM heatmap in the overlay video by default")
    output_max_side: int = Field(
        default=720, ge=64, le=4096, description="shorter side of the overlay video at most (720: 1280x720 at 16:9)"
    )
    encoder_preset: str = Field(default="ultrafast", description="libx264 preset of the overlay video")
    crf: int = Field(default=23, ge=0, le=51, description="libx264 CRF of the overlay video")
    render_prefetch_mb: int = Field(
        default=512,  # a 10 s 720p clip whole (I420: 1.4 MB a frame); x max_concurrent_predictions at most
        ge=0,
        description="decoded overlay frames held per prediction while Triton works (the render continues the same "
        "decoder past them; 0: decode only when rendering)",
    )
    checkpoint: Path | None = Field(
        default=BUNDLED_CHECKPOINT,
        description="classifier checkpoint of the Grad-CAM twin: the one `make export` served (None: untrained)",
    )
    twin_reload_interval_s: float = Field(
        default=5.0,
        ge=0,
        description="how often Triton is asked which classifier it serves (the served.* parameters of "
        "temporal_classifier's config); after a re-export the Grad-CAM twin and the reported version follow, when "
        "the served checkpoint is available here (0: never; the identity is still read at start)",
    )
    gradcam_device: str | None = Field(
        default=None, description="torch device of Grad-CAM (default: cuda when available)"
    )

    # Content credentials (C2PA): README "Content credentials"
    c2pa_trust_anchors: Path | None = Field(
        default=None,
        description="PEM file of the C2PA trust anchors a signer must chain to for trusted: true (e.g. the C2PA "
        "conformance trust list; c2pa-python ships none). None: no signer is trusted",
    )
    c2pa_override: bool = Field(
        default=True,
        description="a valid, trusted manifest declaring the video AI-generated makes the verdict FAKE "
        "(verdict_reason content_credentials); false: the credentials are only reported",
    )
    c2pa_timeout_s: float = Field(default=5.0, gt=0, description="longest read of one video's credentials")
    c2pa_max_bytes: int = Field(
        default=200 * MB, gt=0, description="larger files' credentials are not read (an errors entry says so)"
    )
    c2pa_memory_mb: int = Field(
        default=1024, ge=0, description="address-space cap of each credentials reader process (0: none)"
    )

    @field_validator("allowed_hosts", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        """Accept a comma-separated string (the environment's form) or a list."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _redis_url(cls, value: object) -> object:
        """Empty means none (compose passes ``REDIS_URL=`` when unset); else a redis://, rediss:// or unix:// URL."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is None or (isinstance(text, str) and not text.strip()):
            return None
        if not isinstance(text, str) or not text.strip().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("REDIS_URL must be redis://[:PASSWORD@]HOST:PORT/DB (or rediss://, unix://)")
        return text.strip()

    @model_validator(mode="after")
    def _default_base_url(self) -> Settings:
        """``http://HOST:PORT`` (loopback for a wildcard bind) unless given; never a trailing slash."""
        if not self.public_base_url:
            host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
            host = f"[{host}]" if ":" in host else host
            self.public_base_url = f"http://{host}:{self.port}"
        self.public_base_url = self.public_base_url.rstrip("/")
        return self

    @model_validator(mode="after")
    def _cloudinary_needs_url(self) -> Settings:
        if self.storage == "cloudinary" and self.cloudinary_url is None:
            raise ValueError("GATEWAY_STORAGE=cloudinary needs CLOUDINARY_URL")
        return self

    @property
    def media_dir(self) -> Path:
        """Local storage folder."""
        return self.data_dir / "media"

    @property
    def tmp_dir(self) -> Path:
        """Temporary files (downloads, uploads, renders); every request removes its own."""
        return self.data_dir / "tmp"

    @property
    def api_keys_path(self) -> Path:
        """The key store of ``auth=keys``."""
        return self.api_keys_file or self.data_dir / "api-keys.json"

    @property
    def jobs_db(self) -> Path:
        """The SQLite file of the jobs."""
        return self.jobs_db_path or self.data_dir / "jobs.sqlite3"

    @property
    def use_cloudinary(self) -> bool:
        """Whether overlay videos go to Cloudinary."""
        return self.storage == "cloudinary" or (self.storage == "auto" and self.cloudinary_url is not None)
