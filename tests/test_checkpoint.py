"""save_checkpoint / load_checkpoint: the official LIIF format, safe loading, clear errors."""
import os

import pytest
import torch

import fastliif
from fastliif.reference import make_cell

ENCODER = {"name": "edsr-baseline", "args": {"no_upsampling": True, "n_resblocks": 2, "n_feats": 16}}
IMNET = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [32, 32]}}

_CALLED = []


def _side_effect(*args):
    """Runs only when a pickle is fully unpickled (not under weights_only)."""
    _CALLED.append(args)
    return {"unpickled": True}


class Untrusted:
    """A custom class whose unpickling runs code."""

    def __reduce__(self):
        return (_side_effect, ("ran",))


def inputs(seed, b=2, h=5, w=7, q=37):
    g = torch.Generator().manual_seed(seed)
    inp = torch.rand(b, 3, h, w, generator=g)
    coord = torch.rand(b, q, 2, generator=g) * 2 - 1
    cell = make_cell(coord, (3 * h, 3 * w))
    return inp, coord, cell


def small_model(cls, seed, **flags):
    torch.manual_seed(seed)
    model = cls(ENCODER, IMNET, **flags)
    # perturb all float parameters (incl. the frozen mean shifts) so a default init cannot pass
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model.eval()


def official_ckpt(model, **model_extra):
    return {
        "model": {"name": "liif", "args": {"encoder_spec": ENCODER, "imnet_spec": IMNET, **model_extra},
                  "sd": model.state_dict()},
        "optimizer": {"name": "adam", "args": {"lr": 1e-4}, "sd": None},
        "epoch": 3,
    }


# ----------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("flags", [{}, {"local_ensemble": False, "feat_unfold": False, "cell_decode": False},
                                   {"cell_decode": False}])
def test_round_trip_fused(tmp_path, flags):
    model = small_model(fastliif.nn.LIIF, 0, **flags)
    path = str(tmp_path / "fused.pth")
    fastliif.save_checkpoint(model, path, epoch=7)
    loaded = fastliif.load_checkpoint(path)
    assert isinstance(loaded, fastliif.nn.LIIF)
    for f in ("local_ensemble", "feat_unfold", "cell_decode"):
        assert getattr(loaded, f) == getattr(model, f)
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert list(sd) == list(sd2)
    for k in sd:
        assert torch.equal(sd[k], sd2[k]), k
    inp, coord, cell = inputs(1)
    with torch.no_grad():
        assert torch.equal(loaded(inp, coord, cell), model(inp, coord, cell))
    assert torch.load(path, weights_only=True)["epoch"] == 7


def test_round_trip_reference(tmp_path):
    model = small_model(fastliif.reference.LIIF, 2)
    path = str(tmp_path / "ref.pth")
    fastliif.save_checkpoint(model, path)
    loaded = fastliif.load_checkpoint(path)
    assert isinstance(loaded, fastliif.nn.LIIF)
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert set(sd) == set(sd2)
    for k in sd:
        assert torch.equal(sd[k], sd2[k]), k
    inp, coord, cell = inputs(3)
    with torch.no_grad():
        ref = model(inp, coord, cell)
        out = loaded(inp, coord, cell)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    # the saved file is also loadable as a reference model by the official recipe
    saved = torch.load(path, weights_only=True)
    again = fastliif.models.make({"name": "liif-reference", "args": saved["model"]["args"]})
    again.load_state_dict(saved["model"]["sd"])
    with torch.no_grad():
        assert torch.equal(again(inp, coord, cell), ref)


def test_saved_format_is_official(tmp_path):
    model = small_model(fastliif.nn.LIIF, 4)
    path = str(tmp_path / "m.pth")
    fastliif.save_checkpoint(model, path)
    saved = torch.load(path, weights_only=True)
    assert saved["model"]["name"] == "liif"
    assert saved["model"]["args"]["encoder_spec"] == ENCODER
    assert saved["model"]["args"]["imnet_spec"] == IMNET
    keys = set(saved["model"]["sd"])
    assert {f"imnet.layers.{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")} <= keys
    assert "encoder.head.0.weight" in keys and "encoder.sub_mean.weight" in keys


def test_hand_built_official_dict_loads(tmp_path):
    src = small_model(fastliif.reference.LIIF, 5)
    opt = torch.optim.Adam(src.parameters(), lr=1e-4)
    inp, coord, cell = inputs(6)
    src(inp, coord, cell).square().mean().backward()
    opt.step()
    ckpt = official_ckpt(src)
    ckpt["optimizer"]["sd"] = opt.state_dict()  # real optimizer state, as the official train.py saves
    path = str(tmp_path / "epoch-last.pth")
    torch.save(ckpt, path)
    loaded = fastliif.load_checkpoint(path)  # default: weights_only
    assert isinstance(loaded, fastliif.nn.LIIF)
    src.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(inp, coord, cell), src(inp, coord, cell), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- errors

def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        fastliif.load_checkpoint(path)


def test_directory_is_not_a_checkpoint(tmp_path):
    with pytest.raises((FileNotFoundError, ValueError), match=str(tmp_path.name)):
        fastliif.load_checkpoint(str(tmp_path))


def test_random_bytes(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "garbage.pth"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ValueError) as info:
        fastliif.load_checkpoint(str(path))
    assert str(path) in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(ValueError) as info:
        fastliif.load_checkpoint(str(path))
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", [
    torch.ones(3),
    [1, 2, 3],
    {"sd": {}},
    {"model": {"name": "liif", "args": {}}},         # no 'sd'
    {"model": torch.ones(2)},
])
def test_wrong_structure(tmp_path, content):
    path = str(tmp_path / "wrong.pth")
    torch.save(content, path)
    with pytest.raises(ValueError) as info:
        fastliif.load_checkpoint(path)
    assert path in str(info.value)


def test_wrong_model_name(tmp_path):
    src = small_model(fastliif.reference.LIIF, 7)
    ckpt = official_ckpt(src)
    ckpt["model"]["name"] = "metasr"
    path = str(tmp_path / "metasr.pth")
    torch.save(ckpt, path)
    with pytest.raises(ValueError) as info:
        fastliif.load_checkpoint(path)
    assert path in str(info.value) and "metasr" in str(info.value)


def test_no_encoder_spec(tmp_path):
    src = small_model(fastliif.reference.LIIF, 8)
    ckpt = official_ckpt(src)
    del ckpt["model"]["args"]["encoder_spec"]
    path = str(tmp_path / "noenc.pth")
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="encoder_spec") as info:
        fastliif.load_checkpoint(path)
    assert path in str(info.value)


def test_state_dict_missing_and_unexpected_keys(tmp_path):
    src = small_model(fastliif.reference.LIIF, 9)
    ckpt = official_ckpt(src)
    sd = dict(ckpt["model"]["sd"])
    del sd["imnet.layers.4.bias"]
    sd["imnet.layers.6.weight"] = torch.randn(3, 32)
    ckpt["model"]["sd"] = sd
    path = str(tmp_path / "keys.pth")
    torch.save(ckpt, path)
    with pytest.raises(ValueError) as info:
        fastliif.load_checkpoint(path)
    msg = str(info.value)
    assert path in msg and "imnet.layers.4.bias" in msg and "imnet.layers.6.weight" in msg


def test_state_dict_shape_mismatch(tmp_path):
    """A checkpoint whose args and weights disagree in size (e.g. hidden width 32 vs 64)."""
    src = small_model(fastliif.reference.LIIF, 10)
    ckpt = official_ckpt(src)
    ckpt["model"]["args"]["imnet_spec"] = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [64, 64]}}
    path = str(tmp_path / "shape.pth")
    torch.save(ckpt, path)
    with pytest.raises(ValueError) as info:
        fastliif.load_checkpoint(path)
    assert path in str(info.value)


def test_custom_class_fails_safely(tmp_path):
    src = small_model(fastliif.reference.LIIF, 11)
    ckpt = official_ckpt(src)
    ckpt["extra"] = Untrusted()
    path = str(tmp_path / "custom.pth")
    torch.save(ckpt, path)
    _CALLED.clear()
    with pytest.raises(ValueError) as info:
        fastliif.load_checkpoint(path)
    msg = str(info.value)
    assert path in msg and "trusted=True" in msg
    assert _CALLED == []  # no code from the file ran
    # the caller's explicit trust unpickles it (and runs the class's code)
    loaded = fastliif.load_checkpoint(path, trusted=True)
    assert isinstance(loaded, fastliif.nn.LIIF)
    assert _CALLED == [("ran",)]
    inp, coord, cell = inputs(12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(inp, coord, cell), src(inp, coord, cell), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- the official class

class OfficialLIIF(torch.nn.Module):
    """The official models/liif.py structure: builds from specs but keeps none of them."""

    def __init__(self, encoder_spec, imnet_spec=None, local_ensemble=True, feat_unfold=True, cell_decode=True):
        super().__init__()
        self.local_ensemble, self.feat_unfold, self.cell_decode = local_ensemble, feat_unfold, cell_decode
        self.encoder = fastliif.models.make(encoder_spec)
        in_dim = self.encoder.out_dim * (9 if feat_unfold else 1) + 2 + (2 if cell_decode else 0)
        self.imnet = fastliif.models.make(imnet_spec, args={"in_dim": in_dim}) if imnet_spec else None

    def gen_feat(self, inp):
        self.feat = self.encoder(inp)
        return self.feat

    def query_rgb(self, coord, cell=None):
        return fastliif.reference.query_rgb_reference(self.feat, coord, cell, self.imnet, self.feat_unfold,
                                                      self.local_ensemble, self.cell_decode)

    def forward(self, inp, coord, cell):
        self.gen_feat(inp)
        return self.query_rgb(coord, cell)


@pytest.mark.parametrize("encoder, flags", [
    (ENCODER, {}),
    ({"name": "edsr-baseline", "args": {"no_upsampling": True, "n_resblocks": 1, "n_feats": 8, "res_scale": 0.5}},
     {"cell_decode": False, "local_ensemble": False}),
    ({"name": "rdn", "args": {"no_upsampling": True, "G0": 8, "RDNconfig": "A"}}, {"feat_unfold": False}),
])
def test_official_class_saves_from_its_own_structure(tmp_path, encoder, flags):
    torch.manual_seed(21)
    model = OfficialLIIF(encoder, IMNET, **flags).eval()
    assert not hasattr(model, "encoder_spec")
    path = str(tmp_path / "official.pth")
    fastliif.save_checkpoint(model, path)
    loaded = fastliif.load_checkpoint(path)
    for f in ("local_ensemble", "feat_unfold", "cell_decode"):
        assert getattr(loaded, f) == getattr(model, f)
    inp, coord, cell = inputs(22)
    with torch.no_grad():
        torch.testing.assert_close(loaded(inp, coord, cell), model(inp, coord, cell), rtol=1e-5, atol=1e-6)


def test_official_class_with_an_unknown_encoder_needs_a_spec(tmp_path):
    torch.manual_seed(23)
    model = OfficialLIIF(ENCODER, IMNET)
    model.encoder = torch.nn.Sequential(*model.encoder.head, *model.encoder.body)  # a custom encoder
    model.encoder.out_dim = 16
    path = str(tmp_path / "custom.pth")
    with pytest.raises(ValueError, match=r"cannot tell the encoder_spec.*pass spec=") as info:
        fastliif.save_checkpoint(model, path)
    assert "\n" not in str(info.value) and not os.path.exists(path)
    # a spec that does not rebuild the model is refused too, naming the problem
    with pytest.raises(ValueError, match="does not rebuild this model"):
        fastliif.save_checkpoint(model, path, spec={"name": "liif", "args": {"encoder_spec": ENCODER,
                                                                             "imnet_spec": IMNET}})


def test_explicit_spec_saves_an_official_instance(tmp_path):
    torch.manual_seed(24)
    model = OfficialLIIF(ENCODER, IMNET).eval()
    path = str(tmp_path / "spec.pth")
    fastliif.save_checkpoint(model, path, spec={"name": "liif", "args": {"encoder_spec": ENCODER, "imnet_spec": IMNET}},
                             epoch=5)
    saved = torch.load(path, weights_only=True)
    assert saved["epoch"] == 5 and saved["model"]["args"]["encoder_spec"] == ENCODER
    inp, coord, cell = inputs(25)
    with torch.no_grad():
        torch.testing.assert_close(fastliif.load_checkpoint(path)(inp, coord, cell), model(inp, coord, cell),
                                   rtol=1e-5, atol=1e-6)
