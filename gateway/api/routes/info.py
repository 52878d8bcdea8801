"""``GET /api/v1/info``: the model, its version and threshold, the defaults and the limits."""

from __future__ import annotations

from fastapi import APIRouter

from deepfake_core import constants as C
from gateway.api import API_PREFIX, stage_labels
from gateway.api.deps import ModelDep, SettingsDep, StorageDep
from gateway.api.schemas import InfoResponse

router = APIRouter(prefix=API_PREFIX, tags=["service"])


@router.get("/info", response_model=InfoResponse)
async def info(settings: SettingsDep, model: ModelDep, storage: StorageDep) -> InfoResponse:
    """What a client needs to know before sending a video."""
    s, m = settings, model
    return InfoResponse.model_validate(
        {
            "model": {
                "name": m.name,
                "version": m.version,
                "threshold": m.threshold,
                "num_frames": m.num_frames,
                "crop_size": m.crop_size,
                "training_data": m.training_data,
                "gradcam_version": m.twin_version,
                "precision": m.precision,
                "precision_reason": m.precision_reason,
                "checkpoint_sha256": m.served_sha256,
                "gradcam_checkpoint_sha256": m.twin_sha256,
            },
            "defaults": {"num_frames": s.num_frames, "heatmap": s.heatmap, "output_max_side": s.output_max_side},
            "limits": {
                "max_download_bytes": s.max_download_bytes,
                "max_upload_bytes": s.max_upload_bytes,
                "max_duration_s": s.max_duration_s,
                "max_pixels": s.max_pixels,
                "max_frames": s.max_frames,
                "min_frames": s.min_frames,
                "max_num_frames": C.MAX_NUM_FRAMES,
                "max_redirects": s.max_redirects,
                "download_timeout_s": s.download_timeout_s,
                "triton_timeout_s": s.triton_timeout_s,
                "max_concurrent_predictions": s.max_concurrent_predictions,
            },
            "storage": storage.name,
            "triton_url": s.triton_grpc_url,
            "stages": stage_labels.describe(),
        }
    )
