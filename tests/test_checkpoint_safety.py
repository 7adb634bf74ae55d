"""A small checkpoint cannot make the loaders allocate: args are bounded and checked on the meta
device against the state_dict before anything real is built."""
import subprocess
import sys
import textwrap

import pytest
import torch

import fastliif
from fastliif.checkpoint import load_model
from fastliif.pretrained import load_pretrained

ENCODER = {"name": "edsr-baseline", "args": {"no_upsampling": True, "n_resblocks": 1, "n_feats": 8}}
IMNET = {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16, 16]}}


def tiny_ckpt(path, encoder=ENCODER, imnet=IMNET):
    torch.manual_seed(0)
    model = fastliif.nn.LIIF(ENCODER, IMNET)
    torch.save({"model": {"name": "liif", "args": {"encoder_spec": encoder, "imnet_spec": imnet},
                          "sd": model.state_dict()}}, path)
    return str(path)


def with_encoder(**args):
    return {"name": "edsr-baseline", "args": {**ENCODER["args"], **args}}


def with_hidden(hidden):
    return {"name": "mlp", "args": {"out_dim": 3, "hidden_list": hidden}}


@pytest.mark.parametrize("encoder, imnet, match", [
    (with_encoder(n_resblocks=10_000_000), IMNET, r"encoder_spec\.args\.n_resblocks = 10000000 is implausibly"),
    (ENCODER, with_hidden([60000, 60000]), r"bigger model than its state_dict holds \(18 tensors, [\d,]+ values\): "
     r"refused a torch.empty of [\d,]+ values before allocating it \(its largest arg: "
     r"imnet_spec.args.hidden_list\[0\] = 60000\)"),
    (with_encoder(n_resblocks=40_000), IMNET, r"refused tensor number 53 before allocating it .*n_resblocks = 40000"),
    (ENCODER, with_hidden([16, 24]), r"imnet\.layers\.2\.weight has shape \(16, 16\) in the file, \(24, 16\)"),
    (with_encoder(n_feats=12), IMNET, r"encoder\.head\.0\.weight has shape"),
    (with_encoder(n_resblocks=2), IMNET, r"state_dict does not match the model: missing \['encoder\.body\.1\.body\.0"
     r"\.weight', .*\], unexpected \['encoder\.body\.1\.weight', 'encoder\.body\.1\.bias'\]"),
])
def test_lying_args_are_refused_naming_the_key(tmp_path, encoder, imnet, match):
    path = tiny_ckpt(tmp_path / "evil.pth", encoder, imnet)
    for load in (fastliif.load_checkpoint, load_model, load_pretrained):
        with pytest.raises(ValueError, match=match) as info:
            load(path)
        assert path in str(info.value) and "\n" not in str(info.value)


def test_nothing_big_is_allocated(tmp_path):
    """Under an address-space limit of 1 GiB above what the interpreter already holds, every loader
    (and `upscale --model`) refuses the lying checkpoints with a message: no allocation, no MemoryError.
    Before the meta-device check they tried to allocate 14 GB / 2.6 GB."""
    paths = [tiny_ckpt(tmp_path / "wide.pth", imnet=with_hidden([60000, 60000])),
             tiny_ckpt(tmp_path / "deep.pth", encoder=with_encoder(n_resblocks=40_000, n_feats=64))]
    image = tmp_path / "in.png"
    from PIL import Image
    Image.new("RGB", (8, 8), (10, 200, 30)).save(image)
    script = textwrap.dedent(f"""
        import resource, sys, time, contextlib, io
        import fastliif, fastliif.checkpoint, fastliif.pretrained, fastliif.models
        from fastliif.cli import main
        fastliif.models.names()
        vm = [int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmSize')][0]
        resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.getrlimit(resource.RLIMIT_AS)[1]))
        t0 = time.perf_counter()
        for path in {paths!r}:
            for load in (fastliif.load_checkpoint, fastliif.checkpoint.load_model, fastliif.pretrained.load_pretrained):
                try:
                    load(path)
                except ValueError as exc:
                    assert path in str(exc), exc
                else:
                    sys.exit('loaded ' + path)
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                code = main(['upscale', {str(image)!r}, '-o', {str(tmp_path / 'out.png')!r}, '--scale', '2',
                             '--model', path, '--no-progress'])
            msg = err.getvalue()
            refused = 'bigger model than its state_dict holds' in msg or 'implausibly large' in msg
            assert code == 2 and msg.count(chr(10)) == 1 and path in msg and refused, (code, msg)
        print('seconds', time.perf_counter() - t0)
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert float(res.stdout.split()[-1]) < 20


def test_honest_checkpoint_still_loads_through_every_loader(tmp_path):
    path = tiny_ckpt(tmp_path / "ok.pth")
    sd = torch.load(path, weights_only=True)["model"]["sd"]
    for load in (fastliif.load_checkpoint, load_model, load_pretrained):
        model = load(path)
        assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())
        assert next(model.parameters()).device.type == "cpu"


def test_non_liif_model_with_lying_args(tmp_path):
    torch.manual_seed(0)
    model = fastliif.models.make({"name": "srcnn", "args": {"scale": 2}})
    path = str(tmp_path / "srcnn.pth")
    torch.save({"model": {"name": "srcnn", "args": {"scale": 2, "num_channels": 3000000}, "sd": model.state_dict()}},
               path)
    with pytest.raises(ValueError, match="num_channels = 3000000 is implausibly large"):
        load_model(path)
    torch.save({"model": {"name": "nope", "args": {}, "sd": model.state_dict()}}, path)
    with pytest.raises(ValueError, match="unknown model 'nope'.*srcnn"):
        load_model(path)


@pytest.mark.parametrize("name, args", [
    ("a2n", {"scale": 2}), ("srcnn", {"scale": 2}), ("srresnet", {"scale": 2, "nf": 8, "nb": 1}),
    ("srgan-discriminator", {"nf": 4, "fc_dim": 16}), ("udvd", {}), ("udvd-reference", {}),
    ("rdn", {"G0": 8, "RDNconfig": "A", "no_upsampling": True}), ("edsr-baseline", {"n_resblocks": 1, "n_feats": 8}),
    ("edsr", {"n_resblocks": 1, "n_feats": 8, "scale": 3}),
])
def test_every_registered_model_loads_within_its_budget(tmp_path, name, args):
    """The allocation budget (twice the file's values and tensors) leaves room for what every
    registered model builds; the loaded weights are the saved ones."""
    torch.manual_seed(1)
    model = fastliif.models.make({"name": name, "args": args})
    path = str(tmp_path / f"{name}.pth")
    fastliif.checkpoint.save_model(model, {"name": name, "args": args}, path)
    loaded = load_model(path)
    assert type(loaded) is type(model)
    sd = model.state_dict()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in sd.items())
