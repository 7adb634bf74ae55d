"""Model registry, encoders, MLP and coordinate helpers (official LIIF names and shapes)."""
import pytest
import torch

import fastliif
from fastliif import models
from fastliif.reference import MLP, make_cell, make_coord, to_pixel_samples

SMALL_EDSR = {"name": "edsr-baseline", "args": {"no_upsampling": True, "n_resblocks": 2, "n_feats": 16}}


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def conv_params(cin, cout, k):
    """Weights + bias of a Conv2d(cin, cout, k)."""
    return cin * cout * k * k + cout


# ----------------------------------------------------------------------------- registry

def test_make_by_dict_spec():
    torch.manual_seed(0)
    enc = models.make(SMALL_EDSR)
    assert isinstance(enc, fastliif.reference.EDSR)
    assert enc.out_dim == 16
    assert len(enc.body) == 2 + 1  # 2 resblocks + the closing conv


def test_make_by_name_and_extra_args():
    torch.manual_seed(0)
    enc = models.make("edsr-baseline")
    assert isinstance(enc, fastliif.reference.EDSR)
    assert enc.args.n_resblocks == 16 and enc.args.n_feats == 64
    assert enc.args.no_upsampling is False  # the official default of make_edsr_baseline
    mlp = models.make({"name": "mlp", "args": {"out_dim": 3, "hidden_list": [8]}}, args={"in_dim": 5})
    assert isinstance(mlp, MLP)
    assert mlp.layers[0].in_features == 5


def test_make_does_not_mutate_spec():
    spec = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [8]}}
    models.make(spec, args={"in_dim": 5})
    assert spec == {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [8]}}


def test_registered_names():
    names = models.names()
    for name in ("edsr-baseline", "edsr", "rdn", "mlp", "liif", "liif-reference"):
        assert name in names


def test_make_unknown_name_lists_registered():
    with pytest.raises(KeyError) as info:
        models.make({"name": "no-such-model", "args": {}})
    msg = str(info.value)
    assert "no-such-model" in msg
    for name in ("edsr-baseline", "rdn", "mlp", "liif"):
        assert name in msg
    with pytest.raises(KeyError, match="no-such-model"):
        models.make("no-such-model")


# ----------------------------------------------------------------------------- EDSR

def edsr_expected_params(n_resblocks, n_feats, n_colors=3):
    mean_shifts = 2 * conv_params(3, 3, 1)                    # sub_mean + add_mean: 2 * (9 + 3) = 24
    head = conv_params(n_colors, n_feats, 3)                  # 3*64*9 + 64 = 1792
    resblock = 2 * conv_params(n_feats, n_feats, 3)           # 2 * (64*64*9 + 64) = 73856
    body_tail = conv_params(n_feats, n_feats, 3)              # 36928
    return mean_shifts + head + n_resblocks * resblock + body_tail


def test_edsr_baseline_param_count_and_shape():
    torch.manual_seed(0)
    enc = models.make({"name": "edsr-baseline", "args": {"no_upsampling": True}})
    # 24 + 1792 + 16*73856 + 36928 = 24 + 1792 + 1181696 + 36928
    expected = 24 + 1792 + 16 * 73856 + 36928
    assert expected == 1_220_440
    assert edsr_expected_params(16, 64) == expected
    assert n_params(enc) == expected
    x = torch.rand(2, 3, 7, 5)
    with torch.no_grad():
        y = enc(x)
    assert y.shape == (2, 64, 7, 5)
    assert enc.out_dim == 64


def test_edsr_baseline_state_dict_keys():
    enc = models.make({"name": "edsr-baseline", "args": {"no_upsampling": True}})
    keys = set(enc.state_dict())
    for k in ("sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias", "head.0.weight",
              "head.0.bias", "body.0.body.0.weight", "body.0.body.2.weight", "body.15.body.2.bias",
              "body.16.weight", "body.16.bias"):
        assert k in keys, k
    assert not any(k.startswith("tail") for k in keys)
    # 2 mean shifts + head + 16 blocks * 2 convs + closing conv, each weight + bias
    assert len(keys) == 2 * (2 + 1 + 16 * 2 + 1)


def test_edsr_mean_shift_values():
    enc = models.make("edsr-baseline")
    mean = torch.tensor([0.4488, 0.4371, 0.4040])
    torch.testing.assert_close(enc.sub_mean.bias.detach(), -mean)
    torch.testing.assert_close(enc.add_mean.bias.detach(), mean)
    torch.testing.assert_close(enc.sub_mean.weight.detach().view(3, 3), torch.eye(3))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_upsampling_shapes(scale):
    torch.manual_seed(scale)
    enc = models.make({"name": "edsr-baseline", "args": {"scale": scale, "n_resblocks": 2, "n_feats": 16}})
    assert enc.out_dim == 3
    x = torch.rand(1, 3, 5, 4)
    with torch.no_grad():
        y = enc(x)
    assert y.shape == (1, 3, 5 * scale, 4 * scale)
    # tail: upsampler convs (16 -> 4*16 per x2 stage, or 16 -> 9*16 for x3) and the final conv to RGB
    ups = {2: conv_params(16, 64, 3), 3: conv_params(16, 144, 3), 4: 2 * conv_params(16, 64, 3)}[scale]
    assert n_params(enc) == edsr_expected_params(2, 16) + ups + conv_params(16, 3, 3)
    assert "tail.1.weight" in enc.state_dict()


def test_edsr_unsupported_scale():
    with pytest.raises(ValueError):
        models.make({"name": "edsr-baseline", "args": {"scale": 5}})


def test_edsr_full_defaults():
    enc = models.make({"name": "edsr", "args": {"no_upsampling": True, "n_resblocks": 2}})
    assert enc.args.n_feats == 256 and enc.args.res_scale == 0.1
    assert enc.out_dim == 256


# ----------------------------------------------------------------------------- RDN

def test_rdn_config_b_param_count_keys_shape():
    torch.manual_seed(0)
    enc = models.make({"name": "rdn", "args": {"no_upsampling": True}})
    G0, G, D, C = 64, 64, 16, 8
    sfe1 = conv_params(3, G0, 3)                                     # 1792
    sfe2 = conv_params(G0, G0, 3)                                    # 36928
    # RDB: conv i takes G0 + i*G channels: sum_i ((64 + 64 i) * 64 * 9 + 64), i = 0..7
    #   = 64*64*9 * (1+2+...+8) + 8*64 = 36864 * 36 + 512 = 1327616
    rdb_convs = sum(conv_params(G0 + i * G, G, 3) for i in range(C))
    assert rdb_convs == 36864 * 36 + 512 == 1_327_616
    lff = conv_params(G0 + C * G, G0, 1)                             # 576*64 + 64 = 36928
    rdb = rdb_convs + lff                                            # 1364544
    gff = conv_params(D * G0, G0, 1) + conv_params(G0, G0, 3)        # 65600 + 36928 = 102528
    expected = sfe1 + sfe2 + D * rdb + gff
    assert expected == 1792 + 36928 + 16 * 1_364_544 + 102_528 == 21_973_952
    assert n_params(enc) == expected

    keys = set(enc.state_dict())
    for k in ("SFENet1.weight", "SFENet2.bias", "RDBs.0.convs.0.conv.0.weight", "RDBs.0.convs.7.conv.0.weight",
              "RDBs.15.LFF.weight", "GFF.0.weight", "GFF.1.weight"):
        assert k in keys, k
    assert not any(k.startswith("UPNet") for k in keys)
    assert enc.state_dict()["RDBs.0.convs.7.conv.0.weight"].shape == (64, 64 + 7 * 64, 3, 3)

    x = torch.rand(1, 3, 5, 3)
    with torch.no_grad():
        y = enc(x)
    assert y.shape == (1, 64, 5, 3)
    assert enc.out_dim == 64


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_rdn_upsampling_shapes(scale):
    torch.manual_seed(scale)
    enc = models.make({"name": "rdn", "args": {"RDNconfig": "A", "G0": 8, "scale": scale}})
    assert enc.out_dim == 3
    with torch.no_grad():
        y = enc(torch.rand(1, 3, 4, 3))
    assert y.shape == (1, 3, 4 * scale, 3 * scale)
    assert "UPNet.0.weight" in enc.state_dict()


# ----------------------------------------------------------------------------- MLP

def test_mlp_official_keys_and_count():
    torch.manual_seed(0)
    mlp = models.make({"name": "mlp", "args": {"in_dim": 580, "out_dim": 3, "hidden_list": [256] * 4}})
    keys = list(mlp.state_dict())
    assert keys == [f"layers.{i}.{p}" for i in (0, 2, 4, 6, 8) for p in ("weight", "bias")]
    sd = mlp.state_dict()
    assert sd["layers.0.weight"].shape == (256, 580)
    assert sd["layers.8.weight"].shape == (3, 256)
    assert sd["layers.8.bias"].shape == (3,)
    # 580*256 + 256 + 3 * (256*256 + 256) + 256*3 + 3 = 148736 + 197376 + 771
    assert n_params(mlp) == 148_736 + 3 * 65_792 + 771 == 346_883
    assert [type(m).__name__ for m in mlp.layers] == ["Linear", "ReLU"] * 4 + ["Linear"]


def test_mlp_forward_keeps_leading_dims():
    torch.manual_seed(0)
    mlp = MLP(7, 3, [5, 6])
    x = torch.randn(2, 4, 7)
    y = mlp(x)
    assert y.shape == (2, 4, 3)
    expected = mlp.layers(x.reshape(8, 7)).view(2, 4, 3)
    torch.testing.assert_close(y, expected)


# ----------------------------------------------------------------------------- coordinates

def test_make_coord_2x3():
    coord = make_coord((2, 3))
    # rows: centres of 2 cells over [-1, 1] = -1/2, 1/2; columns: 3 cells = -2/3, 0, 2/3
    expected = torch.tensor([[-0.5, -2 / 3], [-0.5, 0.0], [-0.5, 2 / 3],
                             [0.5, -2 / 3], [0.5, 0.0], [0.5, 2 / 3]])
    assert coord.shape == (6, 2)
    assert coord.dtype == torch.float32
    torch.testing.assert_close(coord, expected, rtol=0, atol=1e-7)

    grid = make_coord((2, 3), flatten=False)
    assert grid.shape == (2, 3, 2)
    torch.testing.assert_close(grid.view(6, 2), expected, rtol=0, atol=1e-7)


def test_make_coord_ranges():
    coord = make_coord((2, 4), ranges=[(0, 1), (-2, 2)])
    # rows over [0, 1]: 0.25, 0.75; columns over [-2, 2] (cell width 1): -1.5, -0.5, 0.5, 1.5
    rows = torch.tensor([0.25, 0.75])
    cols = torch.tensor([-1.5, -0.5, 0.5, 1.5])
    expected = torch.stack([rows.repeat_interleave(4), cols.repeat(2)], dim=-1)
    torch.testing.assert_close(coord, expected, rtol=0, atol=1e-7)


def test_to_pixel_samples():
    torch.manual_seed(0)
    img = torch.rand(3, 2, 3)
    coord, rgb = to_pixel_samples(img)
    assert coord.shape == (6, 2) and rgb.shape == (6, 3)
    torch.testing.assert_close(coord, make_coord((2, 3)))
    for i in range(2):
        for j in range(3):
            assert torch.equal(rgb[i * 3 + j], img[:, i, j])
    # the coordinate of sample (i, j) is the centre of pixel (i, j)
    torch.testing.assert_close(coord[1 * 3 + 2], torch.tensor([0.5, 2 / 3]))


def test_make_cell():
    torch.manual_seed(0)
    coord = torch.rand(2, 5, 2) * 2 - 1
    before = coord.clone()
    cell = make_cell(coord, (8, 10))
    assert cell.shape == coord.shape and cell.dtype == coord.dtype
    torch.testing.assert_close(cell[..., 0], torch.full((2, 5), 2 / 8))
    torch.testing.assert_close(cell[..., 1], torch.full((2, 5), 2 / 10))
    assert torch.equal(coord, before)  # the input is not modified


# ----------------------------------------------------------------------------- constructor checks

@pytest.mark.parametrize("make, match", [
    (lambda: fastliif.nn.LIIF("edsr-baseline", backend="bogus"), r"LIIF: backend must be one of .*got 'bogus'"),
    (lambda: fastliif.nn.LIIF("edsr-baseline", local_ensemble="yes"), r"LIIF: local_ensemble must be True or False"),
    (lambda: fastliif.nn.LIIF("edsr-baseline", cell_decode=1), r"LIIF: cell_decode must be True or False, got 1"),
    (lambda: fastliif.nn.udvd.PixelConv(scale=0), r"PixelConv: scale must be a positive integer, got 0"),
    (lambda: fastliif.nn.udvd.PixelConv(scale=2.0), r"PixelConv: scale must be a positive integer, got 2.0"),
    (lambda: fastliif.nn.udvd.PixelConv(depthwise="no"), r"PixelConv: depthwise must be True or False"),
    (lambda: fastliif.nn.udvd.PixelConv(backend="gpu"), r"PixelConv: backend must be one of"),
    (lambda: fastliif.nn.UDVD(backend="fast"), r"UDVD: backend must be one of .*got 'fast'"),
])
def test_fused_constructors_check_their_options(make, match):
    with pytest.raises(ValueError, match=match):
        make()
