"""ResNet builder (stems, channels, aux head, ImageNet weights from a local file) and model files."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from fer_pipeline.core.classes import CLASSES
from fer_pipeline.core.models import (
    FERResNet,
    build_model,
    build_resnet34,
    load_model,
    model_config,
    save_model,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("stem,map_side", [("small", 6), ("small_pool", 3), ("imagenet", 2)])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_shapes_for_every_stem_and_channels(stem, map_side, in_channels):
    model = build_resnet34(stem=stem, in_channels=in_channels).eval()
    x = torch.randn(2, in_channels, 48, 48)
    with torch.no_grad():
        assert model(x).shape == (2, len(CLASSES))
        assert model.feature_map(x).shape == (2, 512, map_side, map_side)
        assert model(torch.randn(2, in_channels, 44, 44)).shape == (2, len(CLASSES))


def test_small_stem_is_3x3_stride_1_without_maxpool():
    small = build_resnet34(stem="small").backbone
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, torch.nn.Identity)
    imagenet = build_resnet34(stem="imagenet").backbone
    assert imagenet.conv1.kernel_size == (7, 7) and imagenet.conv1.stride == (2, 2)
    assert isinstance(imagenet.maxpool, torch.nn.MaxPool2d)
    pooled = build_resnet34(stem="small_pool").backbone  # the small stem's conv, ImageNet's max-pool
    assert pooled.conv1.kernel_size == (3, 3) and pooled.conv1.stride == (1, 1)
    assert isinstance(pooled.maxpool, torch.nn.MaxPool2d) and pooled.maxpool.stride == 2
    # ResNet-34 block layout, not ResNet-18
    assert [len(getattr(small, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]


def test_invalid_arguments():
    with pytest.raises(ValueError, match="stem"):
        build_resnet34(stem="tiny")
    with pytest.raises(ValueError, match="in_channels"):
        build_resnet34(in_channels=2)


def test_aux_reconstruction_head():
    model = build_resnet34(stem="imagenet", aux_reconstruction=True, num_classes=5).train()
    x = torch.randn(3, 1, 44, 44)
    logits = model(x)
    assert logits.shape == (3, 5)  # plain forward always gives logits only
    logits, recon = model.forward_with_aux(x)
    assert logits.shape == (3, 5) and recon.shape == x.shape
    torch.nn.functional.mse_loss(recon, x).backward()
    assert model.backbone.layer4[0].conv1.weight.grad.abs().sum() > 0  # reconstruction trains the backbone
    plain = build_resnet34(stem="imagenet")
    assert not plain.has_aux
    with pytest.raises(RuntimeError, match="aux_reconstruction"):
        plain(x, with_aux=True)


def test_dropout_and_cosine_classifier():
    model = build_resnet34(stem="imagenet", dropout=0.5, classifier="cosine").eval()
    with torch.no_grad():
        logits = model(torch.randn(4, 1, 48, 48))
    assert logits.abs().max() <= 1.0 + 1e-5
    assert isinstance(model.dropout, torch.nn.Dropout)


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def test_save_load_round_trip_is_exact(tmp_path):
    model = build_resnet34(stem="small", aux_reconstruction=True, dropout=0.2)
    model.train()(torch.randn(4, 1, 44, 44))  # move BatchNorm running stats off their init
    config = model_config(stem="small", input_size=44, aux_reconstruction=True, dropout=0.2)
    path = save_model(tmp_path / "model.pt", model, config)
    payload = torch.load(path, weights_only=True)  # plain types + tensors only
    assert set(payload) == {"config", "state_dict"}
    loaded, loaded_config = load_model(path)
    assert loaded_config == config and not loaded.training
    x = torch.randn(2, 1, 44, 44)
    assert torch.equal(_outputs(model, x), _outputs(loaded, x))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left


def test_save_load_strips_ema_and_compile_prefixes(tmp_path):
    model = build_resnet34(stem="imagenet")
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    ema.update_parameters(model)
    config = model_config(stem="imagenet")
    loaded, _ = load_model(save_model(tmp_path / "ema.pt", ema, config))
    x = torch.randn(2, 1, 48, 48)
    assert torch.equal(_outputs(ema.module, x), _outputs(loaded, x))

    # a state dict saved straight from a torch.compile'd model carries "_orig_mod." keys
    prefixed = {f"_orig_mod.{k}": v for k, v in model.state_dict().items()}
    torch.save({"config": config, "state_dict": prefixed}, tmp_path / "compiled.pt")
    loaded, _ = load_model(tmp_path / "compiled.pt")
    assert torch.equal(_outputs(model, x), _outputs(loaded, x))


def test_float16_model_file_is_half_the_size_and_loads_as_float32(tmp_path):
    model = build_resnet34(stem="imagenet")
    model.train()(torch.randn(8, 1, 44, 44))
    with torch.no_grad():
        model.backbone.bn1.running_var[0] = 1e6  # beyond float16's range: must stay float32, not become inf
    config = model_config(stem="imagenet", input_size=44)
    full = save_model(tmp_path / "fp32.pt", model, config)
    half = save_model(tmp_path / "fp16.pt", model, config, dtype=torch.float16)
    assert half.stat().st_size < 0.52 * full.stat().st_size
    state = torch.load(half, weights_only=True)["state_dict"]
    assert state["classifier.weight"].dtype == torch.float16
    assert state["backbone.bn1.running_var"].dtype == torch.float32  # kept: 1e6 > 65504
    assert state["backbone.bn1.num_batches_tracked"].dtype == torch.int64
    loaded, loaded_config = load_model(half)
    assert loaded_config == config
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    assert loaded.backbone.bn1.running_var[0].item() == 1e6
    x = torch.randn(16, 1, 44, 44)
    reference, result = _outputs(model, x), _outputs(loaded, x)
    assert not torch.equal(reference, result)  # rounded, really
    assert torch.allclose(reference, result, atol=0.05, rtol=0.01)


def test_build_model_from_config_matches_architecture():
    config = model_config(arch="resnet18", stem="imagenet", in_channels=3, num_classes=4, classes=list("abcd"))
    model = build_model(config)
    assert isinstance(model, FERResNet) and model.classifier.out_features == 4
    assert model.backbone.conv1.in_channels == 3
    with pytest.raises(ValueError):
        model_config(num_classes=3)  # 7 class names for 3 classes


@pytest.fixture()
def imagenet_file(tmp_path):
    """A fake torchvision ResNet-34 ImageNet checkpoint (random values, the real shapes)."""
    reference = torchvision.models.resnet34(weights=None)
    path = tmp_path / "resnet34-imagenet.pth"
    torch.save(reference.state_dict(), path)
    return path, reference.state_dict()


def test_imagenet_weights_rgb_summed_into_one_channel(imagenet_file):
    path, reference = imagenet_file
    model = build_resnet34(stem="imagenet", in_channels=1, weights_path=path)
    assert torch.equal(model.backbone.conv1.weight, reference["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(model.backbone.layer3[2].conv2.weight, reference["layer3.2.conv2.weight"])
    assert torch.equal(model.backbone.bn1.running_var, reference["bn1.running_var"])
    assert model.classifier.weight.shape == (len(CLASSES), 512)  # a new head, not ImageNet's fc

    # the summed 1-channel stem on a grey face == the RGB stem on that face repeated 3 times
    rgb = build_resnet34(stem="imagenet", in_channels=3, weights_path=path)
    assert torch.equal(rgb.backbone.conv1.weight, reference["conv1.weight"])
    rgb.classifier.load_state_dict(model.classifier.state_dict())
    grey = torch.rand(2, 1, 48, 48)
    torch.testing.assert_close(_outputs(model, grey), _outputs(rgb, grey.repeat(1, 3, 1, 1)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stem", ["small", "small_pool"])
def test_imagenet_weights_with_a_stride_1_stem_keep_new_conv1(imagenet_file, tmp_path, stem):
    path, reference = imagenet_file
    model = build_resnet34(stem=stem, in_channels=1, weights_path=path)
    assert model.backbone.conv1.weight.shape == (64, 1, 3, 3)
    assert torch.equal(model.backbone.layer1[0].conv1.weight, reference["layer1.0.conv1.weight"])
    # a {"state_dict": ...} wrapper is accepted too
    torch.save({"state_dict": reference}, tmp_path / "wrapped.pth")
    wrapped = build_resnet34(stem="imagenet", weights_path=tmp_path / "wrapped.pth")
    assert torch.equal(wrapped.backbone.layer4[2].bn2.weight, reference["layer4.2.bn2.weight"])


def test_imagenet_weights_of_another_architecture_are_rejected(tmp_path):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match="does not match"):
        build_resnet34(stem="imagenet", weights_path=tmp_path / "r18.pth")
