"""The bundled model: present in the package, official format, loads into both the fused and the
reference LIIF, and beats bicubic on photographs it was not trained on: chelsea, and a smooth and a
textured crop of the test set, whose gains are held to what the shipped model measured (a quality
regression check; the README's full table comes from `fastliif eval` + scripts/quality_table.py)."""
import os

import pytest
import torch

from fastliif.checkpoint import read_checkpoint
from fastliif.data.folders import SampleImages
from fastliif.evaluate import evaluate
from fastliif.pretrained import DEFAULT_CHECKPOINT, load_pretrained


REGRESSION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "regression")


def test_bundled_checkpoint_is_small_and_official():
    assert os.path.isfile(DEFAULT_CHECKPOINT), "the bundled model must ship with the package"
    assert os.path.getsize(DEFAULT_CHECKPOINT) < 4 * 2**20
    saved = read_checkpoint(DEFAULT_CHECKPOINT)
    assert saved["model"]["name"] == "liif" and {"args", "sd"} <= set(saved["model"])
    assert "optimizer" not in saved  # shipped for inference only
    args = saved["model"]["args"]  # the official EDSR-baseline LIIF
    assert args["encoder_spec"]["name"] == "edsr-baseline" and args["imnet_spec"]["args"]["hidden_list"] == [256] * 4
    assert sum(v.numel() for v in saved["model"]["sd"].values()) == 1_567_323
    # float16 storage, computed in float32 within the bound ship_checkpoint checked
    assert {v.dtype for v in saved["model"]["sd"].values() if v.is_floating_point()} == {torch.float16}
    assert saved["fastliif"]["fp16_max_output_difference"] <= 1e-3
    assert all(p.dtype == torch.float32 for p in load_pretrained().parameters())
    # trained on the get_photos training split only (stage 2: plus blurred copies of it), not on
    # the test set or the demo's chelsea; stage 2 starts from stage 1's weights (init: bilinear)
    config = saved["fastliif"]["config"]
    assert config["train_dataset"]["dataset"]["args"]["root_path"].endswith("/train_smooth")
    assert config["init"] == "default" and config["init_from"].endswith("/liif-photos/epoch-last.pth")


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


# Y-PSNR gain over bicubic (dB, benchmark protocol) the shipped model measured on the regression
# crops; a retrained or mis-loaded model must not fall more than 0.1 dB below. Stage 1 alone
# measured +0.14 / -0.15 / -0.13 on the bokeh crop at x2 / x3 / x4 (the previous bundled model
# -2.00 / - / -2.11). At x4 the shipped model is level with bicubic (+0.002), and at x6 (not held
# here) it still loses by 0.10 dB on this crop: issue 13's closing note.
MEASURED_GAIN = {("TwoWings-bokeh", 2): 0.371, ("TwoWings-bokeh", 3): 0.088, ("TwoWings-bokeh", 4): 0.002,
                 ("Dune-grass", 2): 3.359, ("Dune-grass", 3): 1.692, ("Dune-grass", 4): 1.112}


@pytest.mark.parametrize("name, scale", sorted(MEASURED_GAIN))
def test_regression_crops_smooth_and_textured(name, scale):
    from fastliif.data.io import load_image
    img = load_image(os.path.join(REGRESSION, name + ".png"))
    result = evaluate(load_pretrained(), [(name, img)], [scale], "benchmark", progress=False)
    gain = result["scales"][0]["psnr"] - result["scales"][0]["bicubic_psnr"]
    assert gain > MEASURED_GAIN[(name, scale)] - 0.1, (name, scale, gain)
