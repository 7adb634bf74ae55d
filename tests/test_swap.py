"""fastliif.swap / unswap on a LIIF-structured model that shares no code with fastliif's classes."""
import copy
import importlib
import itertools
import warnings

import pytest
import torch
import torch.nn as nn

import fastliif
from fastliif.reference import query_rgb_reference

FUSED_MODULE = importlib.import_module("fastliif.nn.liif")
FLAGS = list(itertools.product([False, True], repeat=3))
# the warning names both structures it looked for
NOTHING_SWAPPED = r"nothing swapped in this \w+: .*LIIF-structured.*PixelConv-structured"  # (feat_unfold, local_ensemble, cell_decode)


# ----------------------------------------------------------------------------- an independent LIIF

class ConvEncoder(nn.Module):
    def __init__(self, out_dim=8):
        super().__init__()
        self.out_dim = out_dim
        self.net = nn.Sequential(nn.Conv2d(3, out_dim, 3, padding=1), nn.ReLU(), nn.Conv2d(out_dim, out_dim, 3, padding=1))

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, in_dim, out_dim, hidden, act=nn.ReLU):
        super().__init__()
        layers, width = [], in_dim
        for h in hidden:
            layers += [nn.Linear(width, h), act()]
            width = h
        layers.append(nn.Linear(width, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        lead = x.shape[:-1]
        return self.layers(x.reshape(-1, x.shape[-1])).view(*lead, -1)


class MyLIIF(nn.Module):
    def __init__(self, feat_unfold=True, local_ensemble=True, cell_decode=True, c=8, hidden=(32, 24),
                 act=nn.ReLU, with_imnet=True):
        super().__init__()
        self.feat_unfold, self.local_ensemble, self.cell_decode = feat_unfold, local_ensemble, cell_decode
        self.encoder = ConvEncoder(c)
        in_dim = c * (9 if feat_unfold else 1) + 2 + (2 if cell_decode else 0)
        self.imnet = Decoder(in_dim, 3, hidden, act) if with_imnet else None

    def gen_feat(self, inp):
        self.feat = self.encoder(inp)
        return self.feat

    def query_rgb(self, coord, cell=None):
        return query_rgb_reference(self.feat, coord, cell, self.imnet, feat_unfold=self.feat_unfold,
                                   local_ensemble=self.local_ensemble, cell_decode=self.cell_decode)

    def forward(self, inp, coord, cell):
        self.gen_feat(inp)
        return self.query_rgb(coord, cell)


class Wrapper(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.pre = nn.Conv2d(3, 3, 1)
        self.sr = MyLIIF(**kw)

    def forward(self, inp, coord, cell):
        return self.sr(self.pre(inp), coord, cell)


def make_model(seed, cls=Wrapper, **kw):
    torch.manual_seed(seed)
    return cls(**kw)


def inputs(seed, b=2, h=6, w=5, q=41, scale=2.7):
    g = torch.Generator().manual_seed(seed)
    inp = torch.rand(b, 3, h, w, generator=g)
    coord = torch.rand(b, q, 2, generator=g) * 2.2 - 1.1  # some outside [-1, 1]
    cell = torch.empty(b, q, 2)
    cell[..., 0], cell[..., 1] = 2 / (h * scale), 2 / (w * scale)
    return inp, coord, cell


@pytest.fixture
def count_fused(monkeypatch):
    calls = []
    original = FUSED_MODULE.liif_query

    def counting(*args, **kwargs):
        calls.append(kwargs.get("backend"))
        return original(*args, **kwargs)

    monkeypatch.setattr(FUSED_MODULE, "liif_query", counting)
    return calls


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- tests

def test_swap_returns_names_and_calls_fused(count_fused):
    model = make_model(0)
    assert fastliif.swap(model) == ["sr"]
    assert "query_rgb" in model.sr.__dict__
    inp, coord, cell = inputs(1)
    with torch.no_grad():
        model(inp, coord, cell)
    assert len(count_fused) == 1


def test_swap_top_level_and_several():
    single = make_model(0, MyLIIF)
    assert fastliif.swap(single) == [""]
    torch.manual_seed(1)
    many = nn.ModuleDict({"a": MyLIIF(), "b": nn.Sequential(nn.ReLU(), MyLIIF(feat_unfold=False)), "c": nn.Linear(2, 2)})
    assert sorted(fastliif.swap(many)) == ["a", "b.1"]


@pytest.mark.parametrize("backend", ["auto", "torch"])
@pytest.mark.parametrize("feat_unfold,local_ensemble,cell_decode", FLAGS)
def test_swapped_outputs_match(count_fused, backend, feat_unfold, local_ensemble, cell_decode):
    seed = 100 + 8 * FLAGS.index((feat_unfold, local_ensemble, cell_decode))
    model = make_model(seed, feat_unfold=feat_unfold, local_ensemble=local_ensemble, cell_decode=cell_decode)
    inp, coord, cell = inputs(seed + 1)
    with torch.no_grad():
        expected = model(inp, coord, cell)
    assert count_fused == []
    fastliif.swap(model, backend=backend)
    inp2, coord2, cell2 = inputs(seed + 2)
    with torch.no_grad():
        got = model(inp, coord, cell)
        got2 = model(inp2, coord2, cell2)
    fastliif.unswap(model)
    with torch.no_grad():
        expected2 = model(inp2, coord2, cell2)
    close(got, expected)
    close(got2, expected2)
    assert count_fused == [backend, backend]
    if not cell_decode:  # cell is optional then, as in the official query_rgb(coord, cell=None)
        fastliif.swap(model, backend=backend)
        with torch.no_grad():
            model.sr.gen_feat(model.pre(inp))
            close(model.sr.query_rgb(coord), expected)


def test_swap_imnet_none():
    model = make_model(3, with_imnet=False)
    inp, coord, cell = inputs(4)
    with torch.no_grad():
        expected = model(inp, coord, cell)
    assert fastliif.swap(model) == ["sr"]
    with torch.no_grad():
        assert torch.equal(model(inp, coord, cell), expected)


def test_parameters_and_state_dict_unchanged():
    model = make_model(5)
    ids = [id(p) for p in model.parameters()]
    names = [n for n, _ in model.named_parameters()]
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    fastliif.swap(model)
    assert [id(p) for p in model.parameters()] == ids
    assert [n for n, _ in model.named_parameters()] == names
    sd2 = model.state_dict()
    assert list(sd2) == list(sd)
    for k in sd:
        assert torch.equal(sd[k], sd2[k])
    # a swapped model still loads an unswapped state_dict
    other = make_model(6)
    model.load_state_dict(other.state_dict())


@pytest.mark.parametrize("feat_unfold,local_ensemble,cell_decode", [(True, True, True), (False, True, False),
                                                                     (True, False, True)])
def test_optimizer_and_gradients(count_fused, feat_unfold, local_ensemble, cell_decode):
    flags = dict(feat_unfold=feat_unfold, local_ensemble=local_ensemble, cell_decode=cell_decode)
    model = make_model(7, **flags)
    plain = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)       # created before the swap
    opt_plain = torch.optim.SGD(plain.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    assert fastliif.swap(model) == ["sr"]
    assert fastliif.swap(plain) == ["sr"] and fastliif.unswap(plain) == ["sr"]

    inp, coord, cell = inputs(8)
    target = torch.rand(2, coord.shape[1], 3)
    loss = (model(inp, coord, cell) - target).square().mean()
    loss_plain = (plain(inp, coord, cell) - target).square().mean()
    assert len(count_fused) == 1  # only the swapped model used the fused op
    loss.backward()
    loss_plain.backward()
    close(loss.detach(), loss_plain.detach())
    for (name, p), q in zip(model.named_parameters(), plain.parameters()):
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7 * q.grad.abs().max().item(), msg=name)
    opt.step()
    opt_plain.step()
    for p, q, b in zip(model.parameters(), plain.parameters(), before):
        assert not torch.equal(p.detach(), b)  # the optimizer updated the swapped model's parameters
        close(p.detach(), q.detach())


def test_unswap_restores_class_method(count_fused):
    model = make_model(9)
    original = model.sr.query_rgb
    assert original.__func__ is MyLIIF.query_rgb
    fastliif.swap(model)
    assert model.sr.query_rgb.__func__ is not MyLIIF.query_rgb
    assert fastliif.unswap(model) == ["sr"]
    assert model.sr.query_rgb.__func__ is MyLIIF.query_rgb
    assert model.sr.query_rgb.__self__ is model.sr
    assert "query_rgb" not in model.sr.__dict__
    inp, coord, cell = inputs(10)
    with torch.no_grad():
        model(inp, coord, cell)
    assert count_fused == []
    assert fastliif.unswap(model) == []  # nothing left to restore
    # and it can be swapped again
    assert fastliif.swap(model) == ["sr"]
    with torch.no_grad():
        model(inp, coord, cell)
    assert len(count_fused) == 1


def test_swap_twice_is_noop(count_fused):
    model = make_model(11)
    assert fastliif.swap(model) == ["sr"]
    bound = model.sr.__dict__["query_rgb"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # already swapped: nothing to say
        assert fastliif.swap(model) == []
        assert fastliif.swap(model, backend="torch") == []
    assert model.sr.__dict__["query_rgb"] is bound
    inp, coord, cell = inputs(12)
    with torch.no_grad():
        model(inp, coord, cell)
    assert count_fused == ["auto"]  # the first swap's backend, one fused call per query
    assert fastliif.unswap(model) == ["sr"]
    assert model.sr.query_rgb.__func__ is MyLIIF.query_rgb


def test_non_liif_structure_not_swapped(count_fused):
    tanh = make_model(13, act=nn.Tanh)
    with pytest.warns(UserWarning, match=NOTHING_SWAPPED):
        assert fastliif.swap(tanh) == []
    assert "query_rgb" not in tanh.sr.__dict__

    no_flags = make_model(14)
    del no_flags.sr.cell_decode
    with pytest.warns(UserWarning, match=NOTHING_SWAPPED):
        assert fastliif.swap(no_flags) == []

    no_encoder = make_model(15)
    no_encoder.sr.encoder = None
    with pytest.warns(UserWarning, match=NOTHING_SWAPPED):
        assert fastliif.swap(no_encoder) == []

    class ExtraLayer(MyLIIF):
        def __init__(self):
            super().__init__()
            self.imnet.layers.append(nn.Sigmoid())

    torch.manual_seed(16)
    with pytest.warns(UserWarning, match=NOTHING_SWAPPED):
        assert fastliif.swap(ExtraLayer()) == []
    with pytest.warns(UserWarning, match=NOTHING_SWAPPED):
        assert fastliif.swap(nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())) == []

    inp, coord, cell = inputs(17)
    with torch.no_grad():
        tanh(inp, coord, cell)
    assert count_fused == []


def test_fused_liif_left_alone():
    torch.manual_seed(18)
    enc = {"name": "edsr-baseline", "args": {"no_upsampling": True, "n_resblocks": 2, "n_feats": 16}}
    imnet = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16]}}
    fused = fastliif.nn.LIIF(enc, imnet)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # already fused: nothing to say
        assert fastliif.swap(fused) == []
    assert "query_rgb" not in fused.__dict__
    assert fused.query_rgb.__func__ is fastliif.nn.LIIF.query_rgb
    # in a container with a reference LIIF, only the reference one is swapped
    both = nn.ModuleDict({"fused": fused, "ref": fastliif.reference.LIIF(enc, imnet)})
    assert fastliif.swap(both) == ["ref"]
    assert fastliif.unswap(both) == ["ref"]


def test_reference_liif_swapped_matches():
    torch.manual_seed(19)
    enc = {"name": "edsr-baseline", "args": {"no_upsampling": True, "n_resblocks": 2, "n_feats": 16}}
    imnet = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [32, 32]}}
    model = fastliif.reference.LIIF(enc, imnet)
    inp, coord, cell = inputs(20)
    with torch.no_grad():
        expected = model(inp, coord, cell)
        assert fastliif.swap(model) == [""]
        close(model(inp, coord, cell), expected)


def test_unknown_backend_refused_before_swapping():
    model = make_model(40)
    with pytest.raises(ValueError, match=r"swap: backend must be one of .*got 'fastest'"):
        fastliif.swap(model, backend="fastest")
    assert "query_rgb" not in model.sr.__dict__
