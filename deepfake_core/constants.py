"""The constants every part of the product shares: export, Triton models, gateway, training.

Never copy one of these values elsewhere: import it.
"""

from __future__ import annotations

# Temporal sampling: T frames evenly spaced over the whole video (DFDC winner, DeepfakeBench).
NUM_FRAMES = 32
MAX_NUM_FRAMES = 128

# Face crop: box grown by CROP_MARGIN of its size on each side, made square, resized to CROP_SIZE.
CROP_SIZE = 224
CROP_MARGIN = 1.0 / 3.0

# Input normalisation of the classifier (ImageNet statistics, RGB order, pixel values scaled to [0, 1]).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# Verdict: probability of FAKE at or above this threshold means FAKE (overridden by checkpoint metadata).
DECISION_THRESHOLD = 0.5

# Analysis resolution: decoded frames are downscaled so that their longer side is at most this.
ANALYSIS_MAX_SIDE = 1280

# FFmpeg decoder threads per video, decided once (docs/performance.md, "Decoder threads"): Triton's video_decode
# decodes the verdict's frames with 2 (0.30 s instead of 0.38-0.46 s for a 10 s 720p clip at concurrency 1);
# everything else (the gateway's overlay render, training, evaluation) with 1, since there concurrent requests pay
# the 10-20 % extra CPU that threads cost. 0 would mean one per core (AUTO), for many-core machines.
VERDICT_DECODE_THREADS = 2
DECODE_THREADS = 1

# The videos the product accepts (deepfake_core.decode.VideoLimits, the gateway's GATEWAY_MAX_* defaults, and
# video_decode's config.pbtxt, which tests/model_repository/test_config_values.py holds equal): DCI 4K frames,
# at most 10 minutes and 36,000 frames (10 minutes at 60 fps). Longer videos would cost minutes of decoding.
VIDEO_MAX_PIXELS = 4096 * 2160
VIDEO_MAX_DURATION_S = 600.0
VIDEO_MAX_FRAMES = 36_000

# MTCNN cascade (facenet-pytorch defaults, with the detection resolution reduced for speed).
MTCNN_THRESHOLDS = (0.6, 0.7, 0.7)
MTCNN_SCALE_FACTOR = 0.709
MTCNN_DETECT_MAX_SIDE = 640  # frames are downscaled to this longer side for detection
MTCNN_MIN_FACE_FRACTION = 0.06  # smallest face searched, as a fraction of the frame's shorter side
MTCNN_MIN_FACE_PX = 20  # ... but never below this many pixels at detection resolution
MTCNN_RNET_PER_FRAME = 24  # P-Net candidates per frame passed to R-Net (best first)
MTCNN_ONET_PER_FRAME = 8  # R-Net candidates per frame passed to O-Net
MTCNN_KEY_STRIDE = 4  # the full cascade runs on every 4th sampled frame; O-Net follows faces in between

# Faces per video: the MAX_FACES most prominent face tracks are classified (one batch), the video's score is the
# highest of theirs (deepfake_core.face_tracks.analysed_tracks has the rule that drops tiny and fleeting tracks).
MAX_FACES = 4

# The model repository's names: the ensemble clients call (also the model name reported with every verdict) and
# the classifier it runs (config names equal folder names).
ENSEMBLE = "deepfake_detector"
CLASSIFIER_MODEL = "temporal_classifier"
UNTRAINED_VERSION = "untrained"
UNTRAINED_SEED = 20240601
