"""The bundled model: present in the package, official format, loads into both the fused and the
reference LIIF, and beats bicubic on a photograph it was not trained on (a quality regression
check; the README's full table comes from `fastliif eval`)."""
import os

import pytest
import torch

from fastliif.checkpoint import read_checkpoint
from fastliif.data.folders import SampleImages
from fastliif.evaluate import evaluate
from fastliif.pretrained import DEFAULT_CHECKPOINT, load_pretrained


def test_bundled_checkpoint_is_small_and_official():
    assert os.path.isfile(DEFAULT_CHECKPOINT), "the bundled model must ship with the package"
    assert os.path.getsize(DEFAULT_CHECKPOINT) < 8 * 2**20
    saved = read_checkpoint(DEFAULT_CHECKPOINT)
    assert saved["model"]["name"] == "liif" and {"args", "sd"} <= set(saved["model"])
    assert "optimizer" not in saved  # shipped for inference only
    held_out = {"chelsea", "grace_hopper", "camera"}
    trained_on = set(saved["fastliif"]["config"]["train_dataset"]["dataset"]["args"]["names"])
    assert not trained_on & held_out


def test_fused_and_reference_agree_on_the_bundled_weights():
    fused = load_pretrained()
    ref = load_pretrained(backend="reference")
    torch.manual_seed(0)
    inp = torch.rand(1, 3, 20, 17)
    from fastliif.reference.coord import make_cell, make_coord
    coord = make_coord((51, 40))[None]
    cell = make_cell(coord, (51, 40))
    with torch.no_grad():
        a, b = fused(inp, coord, cell), ref(inp, coord, cell)
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale", [2.5, 4])
def test_beats_bicubic_on_a_held_out_photo(scale):
    img = SampleImages(["chelsea"])[0][:, :160, 100:300]  # a crop keeps the test quick
    result = evaluate(load_pretrained(), [("chelsea", img)], [scale], "benchmark", progress=False)
    row = result["scales"][0]
    assert row["psnr"] > row["bicubic_psnr"] + 0.1, row
