"""Architecture-level properties of the four networks (tiny configs)."""

from __future__ import annotations

import pytest
import torch

from edgerain.errors import EdgerainError
from edgerain.models import build_model, list_models
from edgerain.models.checkpoint import load_checkpoint, read_metadata, save_checkpoint, state_dicts_equal
from edgerain.models.clip import FrozenCLIPImage

TINY = [n for n in list_models() if n.endswith("-tiny")]


def test_registry_has_the_four_families_in_two_sizes():
    for family in ("clip-rpn", "fclip-unet", "clip-weather", "rdmc"):
        assert family in list_models()
        assert f"{family}-tiny" in list_models()


def test_unknown_model_name_suggests_the_closest():
    with pytest.raises(EdgerainError, match="did you mean 'clip-rpn'"):
        build_model("clip-rnp")


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("size", [(1, 1), (17, 23), (40, 9)])
def test_output_shape_and_range_at_odd_sizes(tiny_model_factory, name, size):
    model = tiny_model_factory(name)
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    assert y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("name", TINY)
def test_eval_is_deterministic_and_batch_independent(tiny_model_factory, name):
    model = tiny_model_factory(name)
    x = torch.rand(3, 3, 24, 20)
    with torch.no_grad():
        a, b = model(x), model(x)
        single = model(x[1:2])
    assert torch.equal(a, b)
    # Hard routing groups the batch by expert; each image must come out as if run alone.
    torch.testing.assert_close(a[1:2], single, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", TINY)
def test_frozen_clip_is_unchanged_by_an_optimiser_step_and_stays_in_eval(tiny_model_factory, name):
    model = tiny_model_factory(name)
    model.train()
    frozen = [m for m in model.modules() if isinstance(m, FrozenCLIPImage)]
    if not frozen:
        pytest.skip(f"{name} has no CLIP part")
    before = {k: v.clone() for k, v in frozen[0].state_dict().items()}
    assert all(not m.training for m in frozen[0].modules())
    params = [p for p in model.parameters() if p.requires_grad]
    assert params and not any(p.requires_grad for p in frozen[0].parameters())
    opt = torch.optim.AdamW(params, lr=1e-2)
    out = model.forward_train(torch.rand(2, 3, 32, 32))["out"]
    out.mean().backward()
    opt.step()
    after = frozen[0].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "frozen CLIP weights or BN stats moved"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


@pytest.mark.parametrize("name", TINY)
def test_checkpoint_round_trip_is_bit_exact(tmp_path, tiny_model_factory, name):
    model = tiny_model_factory(name, seed=3)
    path = save_checkpoint(model, tmp_path / "m.safetensors", provenance={"note": "test"})
    meta = read_metadata(path)
    assert meta["model"] == name and meta["provenance"] == {"note": "test"}
    loaded = load_checkpoint(path)
    assert state_dicts_equal(model, loaded)
    x = torch.rand(1, 3, 19, 27)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_checkpoint_of_another_family_is_refused(tmp_path, tiny_model_factory):
    path = save_checkpoint(tiny_model_factory("rdmc-tiny"), tmp_path / "r.safetensors")
    with pytest.raises(EdgerainError, match="not 'clip-rpn-tiny'"):
        load_checkpoint(path, expect_model="clip-rpn-tiny")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"\x08\x00\x00\x00\x00\x00\x00\x00{}"])
def test_corrupt_checkpoint_gives_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(EdgerainError):
        load_checkpoint(path)


def test_truncated_checkpoint_gives_a_clear_error(tmp_path, tiny_model_factory):
    path = save_checkpoint(tiny_model_factory("rdmc-tiny"), tmp_path / "t.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EdgerainError):
        load_checkpoint(path)


def test_clip_rpn_routes_once_per_image_and_soft_mixture_uses_scores(tiny_model_factory):
    model = tiny_model_factory("clip-rpn-tiny")
    x = torch.rand(2, 3, 30, 30)
    with torch.no_grad():
        routing = model.route(x)
        assert routing.scores.shape == (2, len(model.config.prompts))
        torch.testing.assert_close(routing.scores.sum(-1), torch.ones(2))
        hard = model(x)
        expected = torch.stack(
            [model.run_expert(int(e), model_pad(model, x[i : i + 1]))[0] for i, e in enumerate(routing.expert)]
        )[..., :30, :30].clamp(0, 1)
    torch.testing.assert_close(hard, expected, rtol=1e-4, atol=1e-5)


def model_pad(model, x):
    from edgerain.models import pad_to_multiple

    return pad_to_multiple(x, model.pad_multiple)


def test_forced_routing_trains_the_labelled_expert_and_masks_line_up(tiny_model_factory):
    model = tiny_model_factory("clip-rpn-tiny").train()
    x = torch.rand(3, 3, 16, 16)
    labels = torch.tensor([2, 0, 2])
    out = model.forward_train(x, expert=labels)
    assert torch.equal(out["routing"].expert, labels)
    assert out["masks"] and all(m.shape[0] == 3 for m in out["masks"])
    out["out"].mean().backward()
    grads = [any(p.grad is not None for p in e.parameters()) for e in model.experts]
    assert grads == [True, False, True]
