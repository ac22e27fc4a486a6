"""CLIP weights: random (with a warning), local file, local folder, and the offline hub refusal."""

from __future__ import annotations

import json
import time

import pytest
import torch
from safetensors.torch import save_file

from edgerain.errors import EdgerainError
from edgerain.models.clip import UntrainedCLIPWarning, create_clip


def test_random_clip_warns_loudly():
    with pytest.warns(UntrainedCLIPWarning, match="randomly initialised"):
        create_clip("edgerain-tiny-rn", None)


def test_hub_tag_offline_fails_at_once_with_instructions(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(EdgerainError, match="--clip-weights"):
        create_clip("RN50", "openai")
    assert time.monotonic() - start < 5


def test_unknown_tag_and_unknown_model_are_user_errors():
    with pytest.raises(EdgerainError, match="neither a file nor a pretrained tag"):
        create_clip("RN50", "no-such-tag")
    with pytest.raises(EdgerainError, match="unknown CLIP model"):
        create_clip("RN51", None)


@pytest.mark.parametrize("form", ["safetensors", "pt", "folder"])
def test_local_weights_are_loaded(tmp_path, form):
    torch.manual_seed(7)
    with pytest.warns(UntrainedCLIPWarning):
        source = create_clip("edgerain-tiny-rn", None)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    if form == "safetensors":
        path = tmp_path / "clip.safetensors"
        save_file(state, str(path))
    elif form == "pt":
        path = tmp_path / "clip.pt"
        torch.save(state, path)
    else:
        path = tmp_path / "clipdir"
        path.mkdir()
        save_file(state, str(path / "open_clip_model.safetensors"))
        (path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {"embed_dim": 64}}))
    loaded = create_clip("edgerain-tiny-rn", str(path))
    for k, v in source.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_missing_local_weights_file_is_a_user_error(tmp_path):
    with pytest.raises(EdgerainError, match="does not exist"):
        create_clip("edgerain-tiny-rn", str(tmp_path / "nope.safetensors"))
