"""Baseline SR models (A2N, SRCNN, SRResNet/SRGAN), their losses, parameter counts and `fastliif models`.

Parameter counts are pinned to numbers worked out by hand from the papers' layer lists, and the
forwards are checked against functional re-implementations written from the papers' equations.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from fastliif import models
from fastliif.cli import main
from fastliif.models import a2n, srcnn, srgan  # noqa: F401  (registration does not depend on _populate)
from fastliif.models.summary import count_parameters, describe

# Small configurations keep the file fast; the defaults are built only for counts and one shape check.
TINY_A2N = dict(nf=16, unf=8, nb=2)
TINY_SRRESNET = dict(nf=8, nb=2)


def conv(cin, cout, k, bias=True):
    return cin * cout * k * k + (cout if bias else 0)


def rand_lr(n=2, h=5, w=7, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g)


# ----------------------------------------------------------------------------- parameter counts

def a2n_count(scale, nf=40, unf=24, nb=16, c=3, reduction=4):
    # AAB: two bias-free 1x1 convs, ADM Linear nf->nf/r->2 (no bias), attention branch
    # k1 3x3 (no bias) + k2 1x1 (bias) + k3, k4 3x3 (no bias), non-attention 3x3 (no bias).
    aab = 2 * nf * nf + (nf * (nf // reduction) + (nf // reduction) * 2) \
        + 3 * nf * nf * 9 + (nf * nf + nf) + nf * nf * 9
    stage = conv(unf, unf, 1) + conv(unf, unf, 3)           # pixel attention 1x1 + HRconv
    first = conv(nf, unf, 3) + stage                          # upconv1 + att1 + HRconv1
    second = (conv(unf, unf, 3) + stage) if scale == 4 else 0
    return conv(c, nf, 3) + nb * aab + conv(nf, nf, 3) + first + second + conv(unf, c, 3)


def test_a2n_parameter_count_matches_paper():
    # One default AAB: 2*1600 + (400 + 20) + 3*14,400 + 1,640 + 14,400 = 62,860.
    # x4: conv_first 1,120 + 16*62,860 = 1,005,760 + trunk 14,440 + upconv1 8,664 + att1 600
    #     + HRconv1 5,208 + upconv2 5,208 + att2 600 + HRconv2 5,208 + conv_last 651 = 1,047,459.
    # x2/x3 lack upconv2/att2/HRconv2 (11,016): 1,036,443. Paper: 1,047K (x4), 1,036K (x2, x3).
    assert count_parameters(models.make("a2n")) == 1_047_459
    assert count_parameters(models.make({"name": "a2n", "args": {"scale": 2}})) == 1_036_443
    assert count_parameters(models.make({"name": "a2n", "args": {"scale": 3}})) == 1_036_443
    assert a2n_count(4) == 1_047_459 and a2n_count(2) == 1_036_443
    small = models.make({"name": "a2n", "args": {"scale": 4, **TINY_A2N}})
    assert count_parameters(small) == a2n_count(4, **TINY_A2N)


def test_srcnn_parameter_count():
    # 9x9 3->64: 15,552 + 64; 1x1 64->32: 2,048 + 32; 5x5 32->3: 2,400 + 3 = 20,099.
    assert count_parameters(models.make("srcnn")) == 20_099 == conv(3, 64, 9) + conv(64, 32, 1) + conv(32, 3, 5)


def test_srresnet_parameter_counts():
    # head 9x9 3->64 15,616 + PReLU 1; block 2*36,864 + 2 BN*128 + PReLU 1 = 73,985 (x16 = 1,183,760);
    # body tail 36,864 + BN 128; per x2 stage 3x3 64->256 147,712 + PReLU 1; tail 9x9 64->3 15,555.
    base = 15_617 + 16 * 73_985 + 36_992 + 15_555
    for scale, total in ((2, 1_399_637), (4, 1_547_350), (8, 1_695_063)):
        assert base + int(math.log2(scale)) * 147_713 == total
        assert count_parameters(models.make({"name": "srresnet", "args": {"scale": scale}})) == total


def test_discriminator_parameter_count():
    # conv1 1,792; then bias-free convs + BN: 36,992; 73,984; 147,712; 295,424; 590,336;
    # 1,180,672; 2,360,320; dense 512*6*6 -> 1024: 18,875,392; dense 1024 -> 1: 1,025.
    total = (1_792 + 36_992 + 73_984 + 147_712 + 295_424 + 590_336 + 1_180_672 + 2_360_320
             + 18_875_392 + 1_025)
    assert total == 23_563_649
    assert count_parameters(models.make("srgan-discriminator")) == total


def test_describe_and_trainable_count(tmp_path):
    assert describe("srcnn") == "srcnn: 20,099 parameters"
    assert describe({"name": "a2n", "args": {"scale": 2}}) == "a2n(scale=2): 1,036,443 parameters"
    with pytest.raises(TypeError, match="model name or a dict"):
        describe(42)
    path = tmp_path / "vgg.pth"
    torch.save(random_vgg_sd(2), path)
    loss = srgan.VGGPerceptualLoss(path, layer="relu1_2")
    assert count_parameters(loss) == conv(3, 64, 3) + conv(64, 64, 3)
    assert count_parameters(loss, trainable_only=True) == 0


# ----------------------------------------------------------------------------- shapes

@pytest.mark.parametrize("name,scales,extra", [
    ("a2n", (2, 3, 4), TINY_A2N),
    ("srcnn", (1, 2, 3, 4), {}),
    ("srresnet", (2, 4, 8), TINY_SRRESNET),
])
def test_output_shapes_odd_sizes(name, scales, extra):
    torch.manual_seed(0)
    for scale in scales:
        model = models.make({"name": name, "args": {"scale": scale, **extra}})
        for h, w in ((5, 7), (1, 1), (4, 3)):
            out = model(rand_lr(2, h, w))
            assert out.shape == (2, 3, scale * h, scale * w)
            assert torch.isfinite(out).all()


def test_default_models_shapes():
    torch.manual_seed(0)
    x = rand_lr(1, 3, 5)
    for name in ("a2n", "srcnn", "srresnet"):
        assert models.make(name).eval()(x).shape == (1, 3, 12, 20)


def test_discriminator_any_patch_size():
    torch.manual_seed(0)
    d = models.make({"name": "srgan-discriminator", "args": {"nf": 8, "fc_dim": 16}})
    for size in (16, 24, 33, 40):
        out = d(torch.rand(2, 3, size, size + 3))
        assert out.shape == (2,) and torch.isfinite(out).all()
    d.eval()
    assert d(torch.rand(1, 3, 7, 5)).shape == (1,)


def test_discriminator_pool_is_identity_at_96():
    # At the paper's 96x96 patches the 4 stride-2 convs leave 6x6, so the network is exactly the paper's.
    torch.manual_seed(0)
    d = models.make({"name": "srgan-discriminator", "args": {"nf": 4, "fc_dim": 8}}).eval()
    x = torch.rand(2, 3, 96, 96)
    feat = d.features(x)
    assert feat.shape[-2:] == (6, 6)
    torch.testing.assert_close(d(x), d.classifier(feat.flatten(1)).squeeze(1))


# ----------------------------------------------------------------------------- functional references

def lrelu(x):
    return torch.where(x >= 0, x, 0.2 * x)


def nearest_up(x, s):
    return x.repeat_interleave(s, dim=2).repeat_interleave(s, dim=3)


def ref_aab(x, sd, p):
    """One AAB written from the paper's equations with the module's weights."""
    def c(t, key, pad):
        return F.conv2d(t, sd[p + key + ".weight"], sd.get(p + key + ".bias"), padding=pad)
    y = lrelu(c(x, "conv_first", 0))
    hidden = torch.relu(y.mean(dim=(2, 3)) @ sd[p + "ADM.0.weight"].t())
    w = torch.softmax((hidden @ sd[p + "ADM.2.weight"].t()) / 30.0, dim=1)
    mask = torch.sigmoid(c(lrelu(c(y, "attention.k1", 1)), "attention.k2", 0))
    att = c(c(y, "attention.k3", 1) * mask, "attention.k4", 1)
    non = c(y, "non_attention", 1)
    mixed = att * w[:, 0, None, None, None] + non * w[:, 1, None, None, None]
    return c(lrelu(mixed), "conv_last", 0) + x


def ref_a2n(x, sd, scale, nb):
    def c(t, key, pad=1):
        return F.conv2d(t, sd[key + ".weight"], sd.get(key + ".bias"), padding=pad)
    fea = c(x, "conv_first")
    t = fea
    for i in range(nb):
        t = ref_aab(t, sd, f"AAB_trunk.{i}.")
    fea = fea + c(t, "trunk_conv")
    stages = [(2, "1"), (2, "2")] if scale == 4 else [(scale, "1")]
    for factor, k in stages:
        fea = c(nearest_up(fea, factor), "upconv" + k)
        fea = lrelu(fea * torch.sigmoid(c(fea, f"att{k}.conv", 0)))
        fea = lrelu(c(fea, "HRconv" + k))
    return c(fea, "conv_last") + F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


@pytest.mark.parametrize("scale", (2, 3, 4))
def test_a2n_matches_functional_reference(scale):
    torch.manual_seed(scale)
    model = models.make({"name": "a2n", "args": {"scale": scale, **TINY_A2N}}).eval()
    with torch.no_grad():  # large ADM logits: at init softmax(logits / 30) is ~(0.5, 0.5) and hides mix-ups
        for blk in model.AAB_trunk:
            blk.ADM[0].weight.normal_(0.0, 1.0)
            blk.ADM[2].weight.normal_(0.0, 30.0)
    # float64 with a tight tolerance: at init the trunk's share of the output is small, and a
    # float32 tolerance would hide mistakes inside the blocks.
    model.double()
    x = rand_lr(2, 5, 6, seed=scale).double()
    expected = ref_a2n(x, model.state_dict(), scale, TINY_A2N["nb"])
    torch.testing.assert_close(model(x), expected, rtol=1e-12, atol=1e-12)
    blk = model.AAB_trunk[1]
    feat = torch.randn(2, TINY_A2N["nf"], 4, 3, dtype=torch.float64)
    torch.testing.assert_close(blk(feat), ref_aab(feat, model.state_dict(), "AAB_trunk.1."), rtol=1e-12, atol=1e-12)


def test_a2n_skip_mode_and_rgb_range():
    torch.manual_seed(0)
    args = {"scale": 2, **TINY_A2N}
    bil = models.make({"name": "a2n", "args": args}).eval()
    near = models.make({"name": "a2n", "args": {**args, "skip_mode": "nearest"}}).eval()
    near.load_state_dict(bil.state_dict())
    x = rand_lr(1, 4, 5)
    # Only the global skip differs between the two modes.
    torch.testing.assert_close(near(x) - bil(x), nearest_up(x, 2) - F.interpolate(x, scale_factor=2, mode="bilinear"),
                               rtol=1e-5, atol=1e-5)
    # rgb_range=255: the net sees 0..255 values and the result is scaled back to [0, 1].
    r255 = models.make({"name": "a2n", "args": {**args, "rgb_range": 255}}).eval()
    r255.load_state_dict(bil.state_dict())
    torch.testing.assert_close(r255(x), bil(255 * x) / 255, rtol=1e-5, atol=1e-5)


def test_srcnn_matches_functional_reference():
    torch.manual_seed(1)
    model = models.make({"name": "srcnn", "args": {"scale": 3}})
    x = rand_lr(2, 4, 6)
    up = F.interpolate(x, scale_factor=3, mode="bicubic", align_corners=False)
    sd = model.state_dict()
    y = torch.relu(F.conv2d(up, sd["conv1.weight"], sd["conv1.bias"], padding=4))
    y = torch.relu(F.conv2d(y, sd["conv2.weight"], sd["conv2.bias"]))
    y = F.conv2d(y, sd["conv3.weight"], sd["conv3.bias"], padding=2)
    torch.testing.assert_close(model(x), y)


def test_srresnet_eval_matches_functional_reference():
    torch.manual_seed(2)
    model = models.make({"name": "srresnet", "args": {"scale": 4, **TINY_SRRESNET}})
    with torch.no_grad():  # random BN statistics and affine terms so eval-mode BN is not the identity
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_()
                m.bias.normal_()
            if isinstance(m, torch.nn.PReLU):
                m.weight.uniform_(0.05, 0.5)
    model.eval()
    x = rand_lr(2, 3, 5)

    def bn(t, m):
        return (t - m.running_mean[None, :, None, None]) / torch.sqrt(m.running_var[None, :, None, None] + m.eps) \
            * m.weight[None, :, None, None] + m.bias[None, :, None, None]

    def prelu(t, m):
        return torch.where(t >= 0, t, m.weight * t)

    def conv_m(t, m):
        return F.conv2d(t, m.weight, m.bias, padding=m.kernel_size[0] // 2)

    with torch.no_grad():
        fea = prelu(conv_m(x, model.head[0]), model.head[1])
        t = fea
        for blk in model.body:
            b = blk.body
            t = t + bn(conv_m(prelu(bn(conv_m(t, b[0]), b[1]), b[2]), b[3]), b[4])
        fea = fea + bn(conv_m(t, model.body_tail[0]), model.body_tail[1])
        for i in range(0, len(model.upsample), 3):
            fea = prelu(F.pixel_shuffle(conv_m(fea, model.upsample[i]), 2), model.upsample[i + 2])
        expected = conv_m(fea, model.tail)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- gradients, determinism

@pytest.mark.parametrize("spec", [
    {"name": "a2n", "args": {"scale": 4, **TINY_A2N}},
    {"name": "a2n", "args": {"scale": 3, **TINY_A2N}},
    {"name": "srcnn", "args": {"scale": 2}},
    {"name": "srresnet", "args": {"scale": 2, **TINY_SRRESNET}},
    {"name": "srgan-discriminator", "args": {"nf": 4, "fc_dim": 8}},
])
def test_gradients_reach_every_parameter(spec):
    torch.manual_seed(3)
    model = models.make(spec)
    size = 20 if spec["name"] == "srgan-discriminator" else 6
    out = model(rand_lr(2, size, size + 1, seed=3))
    (out.sin().sum()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("name,extra", [("a2n", TINY_A2N), ("srcnn", {}), ("srresnet", TINY_SRRESNET)])
def test_seeded_construction_is_deterministic(name, extra):
    x = rand_lr(1, 4, 5)
    outs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        outs.append(models.make({"name": name, "args": {"scale": 2, **extra}}).eval()(x))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    assert not torch.allclose(outs[0], outs[2])


def test_a2n_attention_dropout_only_in_training():
    torch.manual_seed(4)
    model = models.make({"name": "a2n", "args": {"scale": 2, **TINY_A2N, "attn_drop": 0.5}})
    x = rand_lr(4, 5, 5)
    model.eval()
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
    model.train()
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(1)
    b = model(x)
    assert not torch.allclose(a, b)  # different branches dropped
    # attn_drop=1 in training: the attention branch never contributes; in eval it does.
    model.AAB_trunk[0].attn_drop = model.AAB_trunk[1].attn_drop = 1.0
    before = model(x)
    with torch.no_grad():
        for blk in model.AAB_trunk:
            blk.attention.k4.weight.add_(torch.randn_like(blk.attention.k4.weight))
    torch.testing.assert_close(model(x), before, rtol=0, atol=0)
    model.eval()
    assert not torch.allclose(model(x), before)


# ----------------------------------------------------------------------------- losses

def random_vgg_sd(n_convs, seed=0):
    """torchvision-format vgg19 state_dict holding the first ``n_convs`` convs (+ a classifier key)."""
    g = torch.Generator().manual_seed(seed)
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"]
    sd, cin, idx, done = {}, 3, 0, 0
    for v in cfg:
        if done == n_convs:
            break
        if v == "M":
            idx += 1
            continue
        sd[f"features.{idx}.weight"] = torch.randn(v, cin, 3, 3, generator=g) * (2.0 / (cin * 9)) ** 0.5
        sd[f"features.{idx}.bias"] = torch.randn(v, generator=g) * 0.1
        cin, idx, done = v, idx + 2, done + 1
    sd["classifier.0.weight"] = torch.randn(4, 4, generator=g)  # ignored by the loss
    return sd


def test_vgg_layer_indices_follow_torchvision():
    names = srgan.vgg19_layer_names()
    assert len(names) == 37
    assert names.index("relu5_4") == 35 and names.index("pool5") == 36 and names.index("conv2_1") == 5
    assert names.index("relu2_2") == 8 and names.index("conv3_1") == 10


def test_vgg_perceptual_loss_matches_functional(tmp_path):
    sd = random_vgg_sd(4)  # conv1_1, conv1_2, conv2_1, conv2_2
    path = tmp_path / "vgg19.pth"
    torch.save(sd, path)
    loss = srgan.VGGPerceptualLoss(path, layer="relu2_2")
    g = torch.Generator().manual_seed(5)
    sr = torch.rand(2, 3, 12, 10, generator=g, requires_grad=True)
    hr = torch.rand(2, 3, 12, 10, generator=g)

    def feats(x):
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)  # ImageNet statistics
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        x = (x - mean) / std
        for i in (0, 2):
            x = torch.relu(F.conv2d(x, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], padding=1))
        x = F.max_pool2d(x, 2)
        for i in (5, 7):
            x = torch.relu(F.conv2d(x, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], padding=1))
        return x

    value = loss(sr, hr)
    torch.testing.assert_close(value, ((feats(sr) - feats(hr)) ** 2).mean())
    value.backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())
    # The state_dict of vgg19().features alone (no 'features.' prefix) loads too; l1 criterion.
    torch.save({k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}, tmp_path / "f.pth")
    l1 = srgan.VGGPerceptualLoss(tmp_path / "f.pth", layer="relu2_2", criterion="l1")
    torch.testing.assert_close(l1(sr, hr), (feats(sr) - feats(hr)).abs().mean())


def test_vgg_perceptual_loss_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="VGG19 weights file not found"):
        srgan.VGGPerceptualLoss(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="needs weights_path"):
        srgan.VGGPerceptualLoss(None)
    sd = random_vgg_sd(2)
    torch.save(sd, tmp_path / "short.pth")
    with pytest.raises(ValueError, match=r"key 'features\.5\.weight' is missing"):
        srgan.VGGPerceptualLoss(tmp_path / "short.pth", layer="relu2_1")
    sd["features.2.weight"] = torch.randn(64, 32, 3, 3)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"'features\.2\.weight' has shape \(64, 32, 3, 3\), "
                                         r"expected \(64, 64, 3, 3\)"):
        srgan.VGGPerceptualLoss(tmp_path / "bad.pth", layer="relu1_2")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not read VGG19 weights"):
        srgan.VGGPerceptualLoss(tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="unknown VGG19 layer 'relu6_1'"):
        srgan.VGGPerceptualLoss(tmp_path / "short.pth", layer="relu6_1")
    torch.save(random_vgg_sd(2), tmp_path / "ok.pth")
    loss = srgan.VGGPerceptualLoss(tmp_path / "ok.pth", layer="conv1_1")
    with pytest.raises(ValueError, match="RGB input"):
        loss(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match="shapes differ"):
        loss(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5))


def test_adversarial_losses_match_formulas():
    g = torch.Generator().manual_seed(6)
    real, fake = torch.randn(5, generator=g) * 3, torch.randn(5, generator=g) * 3
    sig = torch.sigmoid
    torch.testing.assert_close(srgan.generator_adversarial_loss(fake), -torch.log(sig(fake)).mean())
    torch.testing.assert_close(srgan.discriminator_adversarial_loss(real, fake),
                               -torch.log(sig(real)).mean() - torch.log(1 - sig(fake)).mean())


def test_generator_loss_terms(tmp_path):
    torch.manual_seed(7)
    d = models.make({"name": "srgan-discriminator", "args": {"nf": 4, "fc_dim": 8}}).eval()
    sr, hr = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    adv = -torch.log(torch.sigmoid(d(sr))).mean()
    total, terms = srgan.generator_loss(sr, hr, d)
    torch.testing.assert_close(total, ((sr - hr) ** 2).mean() + 1e-3 * adv)
    assert set(terms) == {"pixel", "adversarial", "g_loss"}
    torch.save(random_vgg_sd(2), tmp_path / "vgg.pth")
    per = srgan.VGGPerceptualLoss(tmp_path / "vgg.pth", layer="relu1_2")
    total, terms = srgan.generator_loss(sr, hr, d, per, pixel="l1", perceptual_weight=0.5, adv_weight=0.1)
    torch.testing.assert_close(total, (sr - hr).abs().mean() + 0.5 * per(sr, hr) + 0.1 * adv)
    assert terms["perceptual"] == pytest.approx(per(sr, hr).item(), rel=1e-5)
    with pytest.raises(ValueError, match="pixel loss must be"):
        srgan.generator_loss(sr, hr, d, pixel="l3")


def test_srgan_losses_documented_step_order():
    torch.manual_seed(8)
    gen = models.make({"name": "srresnet", "args": {"scale": 2, **TINY_SRRESNET}})
    disc = models.make({"name": "srgan-discriminator", "args": {"nf": 4, "fc_dim": 8}})
    opt_g = torch.optim.Adam(gen.parameters(), 1e-3)
    opt_d = torch.optim.Adam(disc.parameters(), 1e-3)
    g0 = [p.detach().clone() for p in gen.parameters()]
    d0 = [p.detach().clone() for p in disc.parameters()]
    lr, hr = rand_lr(2, 8, 8), torch.rand(2, 3, 16, 16)
    sr = gen(lr)
    g_loss, d_loss, terms = srgan.srgan_losses(sr, hr, disc)
    opt_g.zero_grad(); g_loss.backward(); opt_g.step()
    opt_d.zero_grad(); d_loss.backward(); opt_d.step()
    assert all(not torch.equal(a, b) for a, b in zip(g0, gen.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(d0, disc.parameters()))
    assert {"pixel", "adversarial", "g_loss", "d_loss", "d_real", "d_fake"} <= set(terms)
    assert 0 < terms["d_real"] < 1 and 0 < terms["d_fake"] < 1
    # The discriminator loss does not reach the generator (its fakes are detached).
    gen.zero_grad(set_to_none=True)
    srgan.discriminator_loss(gen(lr), hr, disc)[0].backward()
    assert all(p.grad is None for p in gen.parameters())


# ----------------------------------------------------------------------------- errors

def test_bad_scales_and_arguments():
    with pytest.raises(ValueError, match=r"A2N supports scales \(2, 3, 4\), got 5"):
        models.make({"name": "a2n", "args": {"scale": 5}})
    with pytest.raises(ValueError, match="SRResNet supports scales"):
        models.make({"name": "srresnet", "args": {"scale": 3}})
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="SRCNN scale must be an integer >= 1"):
            models.make({"name": "srcnn", "args": {"scale": bad}})
    with pytest.raises(ValueError, match="filter sizes must be odd"):
        models.make({"name": "srcnn", "args": {"f1": 8}})
    with pytest.raises(ValueError, match="in_nc == out_nc"):
        models.make({"name": "a2n", "args": {"in_nc": 1, "out_nc": 3}})
    with pytest.raises(ValueError, match="skip_mode"):
        models.make({"name": "a2n", "args": {"skip_mode": "area"}})
    with pytest.raises(ValueError, match="attn_drop"):
        models.make({"name": "a2n", "args": {"attn_drop": 1.5}})


@pytest.mark.parametrize("spec,label", [
    ({"name": "a2n", "args": {"scale": 2, **TINY_A2N}}, "A2N"),
    ({"name": "srcnn", "args": {"scale": 2}}, "SRCNN"),
    ({"name": "srresnet", "args": {"scale": 2, **TINY_SRRESNET}}, "SRResNet"),
    ({"name": "srgan-discriminator", "args": {"nf": 4, "fc_dim": 8}}, "discriminator"),
])
def test_wrong_channels_rejected(spec, label):
    model = models.make(spec)
    with pytest.raises(ValueError, match=rf"{label} expects \(N, 3, "):
        model(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match=rf"{label} expects"):
        model(torch.rand(3, 16, 16))


def test_single_channel_models_work():
    torch.manual_seed(9)
    s = models.make({"name": "srcnn", "args": {"scale": 2, "num_channels": 1}})
    assert s(torch.rand(1, 1, 3, 4)).shape == (1, 1, 6, 8)
    m = models.make({"name": "a2n", "args": {"scale": 2, "in_nc": 1, "out_nc": 1, **TINY_A2N}})
    assert m(torch.rand(1, 1, 3, 4)).shape == (1, 1, 6, 8)


# ----------------------------------------------------------------------------- `fastliif models`

def test_models_command_prints_counts(capsys):
    assert main(["models", "a2n", "srcnn", "srresnet", "mlp"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["a2n: 1,047,459 parameters", "srcnn: 20,099 parameters", "srresnet: 1,547,350 parameters",
                     "mlp: skipped, needs arguments (in_dim, out_dim, hidden_list)"]
    assert main(["models", "a2n", "srresnet", "srgan-discriminator", "--arg", "scale=2"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "a2n(scale=2): 1,036,443 parameters", "srresnet(scale=2): 1,399,637 parameters",
        "srgan-discriminator: skipped, takes no argument scale"]


def test_models_command_lists_every_registered_model(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in models.names():
        assert any(line.startswith(name + ":") for line in out.splitlines()), name
    assert "srgan-discriminator: 23,563,649 parameters" in out


def test_models_command_errors(capsys):
    assert main(["models", "no-such-model"]) == 2
    assert "unknown model(s) no-such-model" in capsys.readouterr().err
    assert main(["models", "a2n", "--arg", "scale"]) == 2
    assert "--arg must look like KEY=VALUE" in capsys.readouterr().err
    assert main(["models", "a2n", "--arg", "scale=5"]) == 1
    assert "a2n: cannot be built with {'scale': 5}: ValueError: A2N supports scales" in capsys.readouterr().out
