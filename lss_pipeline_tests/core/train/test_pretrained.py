"""Pretrained backbones: a local file, and `pretrained: timm` offline from a filled Hugging Face cache."""

import hashlib
import os
import subprocess
import sys
import textwrap

import pytest
import timm
import torch
from safetensors.torch import save_file

from lss_pipeline.core.train.config import TrainConfig
from lss_pipeline.core.train.models import create_model
from lss_pipeline.core.train.pretrained import adapt_conv_weight, load_pretrained


def test_pretrained_from_local_file_adapts_first_conv_and_drops_head(tmp_path):
    torch.manual_seed(1)
    rgb = create_model("resnet18", in_chans=3, num_classes=1000)
    path = tmp_path / "resnet18_rgb.pth"
    torch.save(rgb.state_dict(), path)

    torch.manual_seed(2)
    fresh_fc = create_model("resnet18", in_chans=5, num_classes=3).backbone.fc.weight.detach().clone()
    torch.manual_seed(2)
    model = create_model("resnet18", in_chans=5, num_classes=3, pretrained=path).backbone
    rgb = rgb.backbone

    torch.testing.assert_close(model.conv1.weight, adapt_conv_weight(rgb.conv1.weight, 5))
    # A gray image repeated on every channel gives the RGB model's first-conv response.
    torch.testing.assert_close(model.conv1.weight.sum(1), rgb.conv1.weight.sum(1))
    torch.testing.assert_close(model.layer3[0].conv1.weight, rgb.layer3[0].conv1.weight)
    torch.testing.assert_close(model.fc.weight, fresh_fc)  # head left at its init


def test_pretrained_with_wrong_body_shape_is_an_error_naming_the_key(tmp_path):
    state = create_model("resnet18", in_chans=3, num_classes=3).state_dict()
    state["backbone.layer1.0.conv1.weight"] = torch.zeros(1, 1, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, path)
    model = create_model("resnet18", in_chans=3, num_classes=3)
    with pytest.raises(ValueError, match="layer1.0.conv1.weight"):
        load_pretrained(model, path)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_pretrained(model, tmp_path / "missing.pth")


def test_config_takes_none_timm_or_an_existing_file_and_full_defaults_to_timm(tmp_path):
    TrainConfig(pretrained="none").validate()
    TrainConfig(pretrained="timm").validate()
    (tmp_path / "w.pth").write_bytes(b"")
    TrainConfig(pretrained=str(tmp_path / "w.pth")).validate()
    with pytest.raises(FileNotFoundError, match="'none', 'timm' or an existing weights file"):
        TrainConfig(pretrained=str(tmp_path / "absent.pth")).validate()
    assert TrainConfig.from_profile("full", "convnext", "scs").pretrained == "timm"
    assert TrainConfig.from_profile("demo", "convnext", "scs").pretrained == "none"
    with pytest.raises(ValueError, match="timm has no weights for it"):
        create_model("swin_t_w32_window4", in_chans=5, img_size=64, pretrained="timm")


def fill_hub_cache(hub_cache, repo_id: str, state: dict[str, torch.Tensor]) -> None:
    """The Hugging Face cache layout: blobs by content hash, a snapshot per commit, refs/main -> commit."""
    repo = hub_cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    tmp = repo / "model.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    tmp.rename(repo / "blobs" / digest)
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(os.path.relpath(repo / "blobs" / digest, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


OFFLINE_LOAD = """
import socket
def no_network(*args, **kwargs):
    raise AssertionError("network access attempted")
socket.socket.connect = no_network
socket.create_connection = no_network

import torch
from safetensors.torch import load_file
from lss_pipeline.core.train.models import create_model
from lss_pipeline.core.train.pretrained import adapt_conv_weight

published = load_file(PUBLISHED)
torch.manual_seed(0)
model = create_model("test_convnext", in_chans=5, num_classes=3, pretrained="timm").backbone
own = model.state_dict()
torch.testing.assert_close(own["stem.0.weight"], adapt_conv_weight(published["stem.0.weight"], 5))
body = [k for k in published if not k.startswith(("stem.0.", "head.fc."))]
for key in body:
    torch.testing.assert_close(own[key], published[key], rtol=0, atol=0, msg=key)
assert own["head.fc.weight"].shape == (3, published["head.fc.weight"].shape[1])
print("loaded", len(body), "weights from the cache")

try:
    create_model("test_resnet", in_chans=5, num_classes=3, pretrained="timm")
except RuntimeError as exc:
    print("clear error:", exc)
"""


def test_pretrained_timm_loads_from_a_filled_local_hub_cache_offline(tmp_path):
    torch.manual_seed(7)
    published = timm.create_model("test_convnext", pretrained=False).state_dict()  # RGB, 1000 classes
    hub_cache = tmp_path / "hf" / "hub"
    fill_hub_cache(hub_cache, timm.create_model("test_convnext").pretrained_cfg["hf_hub_id"], published)
    save_file({k: v.contiguous() for k, v in published.items()}, str(tmp_path / "published.safetensors"))
    script = textwrap.dedent(OFFLINE_LOAD).replace("PUBLISHED", repr(str(tmp_path / "published.safetensors")))
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(hub_cache),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "loaded" in done.stdout and "weights from the cache" in done.stdout
    # A model whose weights are not in the cache: an error that says what to do, not a network attempt.
    assert "clear error: pretrained: timm could not load weights for 'test_resnet'" in done.stdout
    assert "HF_HUB_OFFLINE is set" in done.stdout and "timm.create_model('test_resnet'" in done.stdout
