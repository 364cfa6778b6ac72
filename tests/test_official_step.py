"""One training step of StackGAN-Pytorch, transcribed in plain PyTorch from the facts in shared/REFERENCE.md, against ours.

The transcription below is written from the official code's facts (`code/model.py`, `code/trainer.py`,
`code/miscc/utils.py`), not from our modules: its own networks (Sigmoid at the end of D's heads, Stage-I run inside
Stage-II's forward in training mode, parameters only `requires_grad=False`), `nn.BCELoss` on probabilities,
`cond = conditions.detach()` in both losses, Adam(2e-4, betas (0.5, 0.999)) over G's trainable parameters, and one
step: noise `normal_(0, 1)` into a preallocated tensor, G forward, D update on the detached fake, G update on the same
fake. Our side only goes through the public entry points: `build_models`, `load_official`, `make_optimizers` and
`train_step`. Both start from the same state dict, the same batch and the same torch seed; afterwards every parameter
and BatchNorm buffer of G and D must agree (1e-6 with the official loss formula in float32, 1e-4 with our logits form
in float64: see CASES), and with `g_cond='grad'` or `stage1_in_stage2='eval'` the same comparison must fail.
"""
import copy
import time
from contextlib import contextmanager

import pytest
import torch
from torch import nn

from stackgan_nb.core import ModelConfig, TrainConfig
from stackgan_nb.models import build_models, load_official
from stackgan_nb.steps import make_optimizers, train_step

TINY = dict(gf_dim=8, df_dim=4, condition_dim=8, z_dim=10, text_dim=32, r_num=1)
STAGE2_TINY = dict(TINY, gf_dim=16, df_dim=8)
BATCH = 6


# -- the official networks (code/model.py), transcribed ------------------------------------------------------------
def FloatTensor(*size):
    "The official code's `torch.FloatTensor(...)` (uninitialised): the default float type, float32 as there unless a test changes it."
    return torch.empty(*size)


def conv3x3(cin, cout): return nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1, bias=False)


def up_block(cin, cout):
    return nn.Sequential(nn.Upsample(scale_factor=2, mode='nearest'), conv3x3(cin, cout), nn.BatchNorm2d(cout), nn.ReLU(True))


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block = nn.Sequential(conv3x3(c, c), nn.BatchNorm2d(c), nn.ReLU(True), conv3x3(c, c), nn.BatchNorm2d(c))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.block(x)
        out += x
        return self.relu(out)


class CA_NET(nn.Module):
    def __init__(self, t_dim, c_dim):
        super().__init__()
        self.c_dim = c_dim
        self.fc = nn.Linear(t_dim, c_dim * 2, bias=True)
        self.relu = nn.ReLU()

    def forward(self, text_embedding):
        x = self.relu(self.fc(text_embedding))
        mu, logvar = x[:, :self.c_dim], x[:, self.c_dim:]
        std = logvar.mul(0.5).exp_()
        eps = FloatTensor(std.size()).normal_()            # the official CPU branch
        return eps.mul(std).add_(mu), mu, logvar


class D_GET_LOGITS(nn.Module):
    def __init__(self, ndf, nef, bcondition=True):
        super().__init__()
        self.ef_dim, self.bcondition = nef, bcondition
        if bcondition:
            self.outlogits = nn.Sequential(conv3x3(ndf * 8 + nef, ndf * 8), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
                                           nn.Conv2d(ndf * 8, 1, kernel_size=4, stride=4), nn.Sigmoid())
        else:
            self.outlogits = nn.Sequential(nn.Conv2d(ndf * 8, 1, kernel_size=4, stride=4), nn.Sigmoid())

    def forward(self, h_code, c_code=None):
        if self.bcondition and c_code is not None:
            c_code = c_code.view(-1, self.ef_dim, 1, 1).repeat(1, 1, 4, 4)
            h_code = torch.cat((h_code, c_code), 1)
        return self.outlogits(h_code).view(-1)


class STAGE1_G(nn.Module):
    def __init__(self, gf_dim, condition_dim, z_dim, text_dim, **_):
        super().__init__()
        self.gf_dim, ngf = gf_dim * 8, gf_dim * 8
        self.ca_net = CA_NET(text_dim, condition_dim)
        self.fc = nn.Sequential(nn.Linear(z_dim + condition_dim, ngf * 4 * 4, bias=False), nn.BatchNorm1d(ngf * 4 * 4), nn.ReLU(True))
        self.upsample1, self.upsample2 = up_block(ngf, ngf // 2), up_block(ngf // 2, ngf // 4)
        self.upsample3, self.upsample4 = up_block(ngf // 4, ngf // 8), up_block(ngf // 8, ngf // 16)
        self.img = nn.Sequential(conv3x3(ngf // 16, 3), nn.Tanh())

    def forward(self, text_embedding, noise):
        c_code, mu, logvar = self.ca_net(text_embedding)
        h = self.fc(torch.cat((noise, c_code), 1)).view(-1, self.gf_dim, 4, 4)
        h = self.upsample4(self.upsample3(self.upsample2(self.upsample1(h))))
        return None, self.img(h), mu, logvar


def _encode(ndf, n_down):
    "The official D encoders: strided 4x4 convs (BN from the second on), LeakyReLU 0.2."
    layers, cin = [nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)], ndf
    for _ in range(n_down - 1):
        layers += [nn.Conv2d(cin, cin * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(cin * 2), nn.LeakyReLU(0.2, inplace=True)]
        cin *= 2
    return layers


class STAGE1_D(nn.Module):
    def __init__(self, df_dim, condition_dim, **_):
        super().__init__()
        self.encode_img = nn.Sequential(*_encode(df_dim, 4))
        self.get_cond_logits = D_GET_LOGITS(df_dim, condition_dim)
        self.get_uncond_logits = None

    def forward(self, image): return self.encode_img(image)


class STAGE2_G(nn.Module):
    def __init__(self, stage1, gf_dim, condition_dim, text_dim, r_num, **_):
        super().__init__()
        ngf, self.ef_dim = gf_dim, condition_dim
        self.STAGE1_G = stage1
        for param in self.STAGE1_G.parameters(): param.requires_grad = False   # all the official code freezes
        self.ca_net = CA_NET(text_dim, condition_dim)
        self.encoder = nn.Sequential(conv3x3(3, ngf), nn.ReLU(True),
                                     nn.Conv2d(ngf, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
                                     nn.Conv2d(ngf * 2, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True))
        self.hr_joint = nn.Sequential(conv3x3(condition_dim + ngf * 4, ngf * 4), nn.BatchNorm2d(ngf * 4), nn.ReLU(True))
        self.residual = nn.Sequential(*[ResBlock(ngf * 4) for _ in range(r_num)])
        self.upsample1, self.upsample2 = up_block(ngf * 4, ngf * 2), up_block(ngf * 2, ngf)
        self.upsample3, self.upsample4 = up_block(ngf, ngf // 2), up_block(ngf // 2, ngf // 4)
        self.img = nn.Sequential(conv3x3(ngf // 4, 3), nn.Tanh())

    def forward(self, text_embedding, noise):
        _, stage1_img, _, _ = self.STAGE1_G(text_embedding, noise)            # no no_grad, no eval(): as the official code
        stage1_img = stage1_img.detach()
        encoded_img = self.encoder(stage1_img)
        c_code, mu, logvar = self.ca_net(text_embedding)
        c_code = c_code.view(-1, self.ef_dim, 1, 1).repeat(1, 1, 16, 16)
        h = self.residual(self.hr_joint(torch.cat([encoded_img, c_code], 1)))
        h = self.upsample4(self.upsample3(self.upsample2(self.upsample1(h))))
        return stage1_img, self.img(h), mu, logvar


class STAGE2_D(nn.Module):
    def __init__(self, df_dim, condition_dim, **_):
        super().__init__()
        ndf = df_dim
        self.encode_img = nn.Sequential(*_encode(ndf, 6),
                                        conv3x3(ndf * 32, ndf * 16), nn.BatchNorm2d(ndf * 16), nn.LeakyReLU(0.2, inplace=True),
                                        conv3x3(ndf * 16, ndf * 8), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True))
        self.get_cond_logits = D_GET_LOGITS(ndf, condition_dim, bcondition=True)
        self.get_uncond_logits = D_GET_LOGITS(ndf, condition_dim, bcondition=False)

    def forward(self, image): return self.encode_img(image)


# -- the official losses and step (code/miscc/utils.py, code/trainer.py), transcribed ------------------------------
def KL_loss(mu, logvar):
    KLD_element = mu.pow(2).add_(logvar.exp()).mul_(-1).add_(1).add_(logvar)
    return torch.mean(KLD_element).mul_(-0.5)


def compute_discriminator_loss(netD, real_imgs, fake_imgs, real_labels, fake_labels, conditions):
    criterion = nn.BCELoss()
    batch_size = real_imgs.size(0)
    cond, fake = conditions.detach(), fake_imgs.detach()
    real_features, fake_features = netD(real_imgs), netD(fake)
    errD_real = criterion(netD.get_cond_logits(real_features, cond), real_labels)
    errD_wrong = criterion(netD.get_cond_logits(real_features[:(batch_size - 1)], cond[1:]), fake_labels[1:])
    errD_fake = criterion(netD.get_cond_logits(fake_features, cond), fake_labels)
    if netD.get_uncond_logits is not None:
        uncond_errD_real = criterion(netD.get_uncond_logits(real_features), real_labels)
        uncond_errD_fake = criterion(netD.get_uncond_logits(fake_features), fake_labels)
        return (errD_real + uncond_errD_real) / 2. + (errD_fake + errD_wrong + uncond_errD_fake) / 3.
    return errD_real + (errD_fake + errD_wrong) * 0.5


def compute_generator_loss(netD, fake_imgs, real_labels, conditions):
    criterion = nn.BCELoss()
    cond = conditions.detach()
    fake_features = netD(fake_imgs)
    errD_fake = criterion(netD.get_cond_logits(fake_features, cond), real_labels)
    if netD.get_uncond_logits is not None:
        errD_fake += criterion(netD.get_uncond_logits(fake_features), real_labels)
    return errD_fake


def official_optimizers(netG, netD, lr=2e-4):
    "trainer.py: Adam over D's parameters and over G's parameters that require grad."
    optimizerD = torch.optim.Adam(netD.parameters(), lr=lr, betas=(0.5, 0.999))
    netG_para = [p for p in netG.parameters() if p.requires_grad]
    return torch.optim.Adam(netG_para, lr=lr, betas=(0.5, 0.999)), optimizerD


def official_step(netG, netD, optimizerG, optimizerD, real_imgs, txt_embedding, noise, kl_coef=2.0):
    "One iteration of trainer.py's loop: (2) generate, (3) update D, (4) update G."
    batch_size = real_imgs.size(0)
    real_labels, fake_labels = FloatTensor(batch_size).fill_(1), FloatTensor(batch_size).fill_(0)
    noise.data.normal_(0, 1)
    _, fake_imgs, mu, logvar = netG(txt_embedding, noise)
    netD.zero_grad()
    errD = compute_discriminator_loss(netD, real_imgs, fake_imgs, real_labels, fake_labels, mu)
    errD.backward()
    optimizerD.step()
    netG.zero_grad()
    errG = compute_generator_loss(netD, fake_imgs, real_labels, mu)
    errG_total = errG + KL_loss(mu, logvar) * kl_coef
    errG_total.backward()
    optimizerG.step()
    return errD.item(), errG_total.item()


def official_models(stage, dims, state_g, state_d):
    "The transcribed networks of `stage`, in training mode, loaded with the given weights."
    if stage == 1: netG, netD = STAGE1_G(**dims), STAGE1_D(**dims)
    else: netG, netD = STAGE2_G(STAGE1_G(**dims), **dims), STAGE2_D(**dims)
    netG.load_state_dict(state_g); netD.load_state_dict(state_d)
    return netG.train(), netD.train()


# -- the comparison ---------------------------------------------------------------------------------------------
@contextmanager
def default_dtype(dtype):
    "Networks, data and noise in `dtype` inside the block."
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try: yield
    finally: torch.set_default_dtype(old)


def initial_state(stage, dims, seed=0):
    "Initial (G, D) state dicts as our `build_models` makes them; a Stage-II's Stage-I with non-trivial running statistics."
    torch.manual_seed(seed)
    G, D = build_models(stage, ModelConfig(**dims))
    if stage == 2:                                       # as if Stage-I had been trained: statistics away from 0 and 1
        for m in G.STAGE1_G.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.normal_(0, 0.1); m.running_var.uniform_(0.5, 1.5); m.num_batches_tracked.fill_(1000)
    return copy.deepcopy(G.state_dict()), copy.deepcopy(D.state_dict())


def batch(stage, dims, n=BATCH, seed=1):
    "A batch of `n` real images in [-1, 1] and caption embeddings."
    g = torch.Generator().manual_seed(seed)
    size = 64 if stage == 1 else 256
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1, torch.randn(n, dims['text_dim'], generator=g)


def ours_after_step(stage, dims, loss, dtype=torch.float32, model=(), train=(), n=BATCH, seed=2):
    "Our G and D after one `train_step` from the initial state (plus model/train config changes), and the loss parts."
    with default_dtype(dtype):
        state_g, state_d = initial_state(stage, dims)
        G, D = build_models(stage, ModelConfig(**dims, **dict(model)))
        load_official(G, state_g); load_official(D, state_d)
        G.train(); D.train()
        cfg = TrainConfig(batch_size=n, **dict(train))
        opt_g, opt_d = make_optimizers(G, D, cfg)
        real, emb = batch(stage, dims, n)
        torch.manual_seed(seed)
        parts = train_step(G, D, opt_g, opt_d, real, emb, cfg, loss=loss)
    return G, D, parts


def official_after_step(stage, dims, dtype=torch.float32, n=BATCH, seed=2):
    "The transcribed networks after one official step from the same initial state, batch and seed, and (errD, errG_total)."
    with default_dtype(dtype):
        state_g, state_d = initial_state(stage, dims)
        netG, netD = official_models(stage, dims, state_g, state_d)
        optimizerG, optimizerD = official_optimizers(netG, netD)
        real, emb = batch(stage, dims, n)
        noise = FloatTensor(n, dims['z_dim'])
        torch.manual_seed(seed)
        losses = official_step(netG, netD, optimizerG, optimizerD, real, emb, noise)
    return netG, netD, losses


def max_diff(ours, official) -> tuple[float, str]:
    "Largest absolute difference over every parameter and BatchNorm statistic of a network pair, and where it is."
    a, b = ours.state_dict(), official.state_dict()
    assert list(a) == list(b)
    return max(((a[k].double() - b[k].double()).abs().max().item(), k) for k in a if a[k].is_floating_point())


def counts_differ(ours, official) -> list[str]:
    "The BatchNorm batch counters (`num_batches_tracked`) that differ."
    a, b = ours.state_dict(), official.state_dict()
    return [k for k in a if not a[k].is_floating_point() and not torch.equal(a[k], b[k])]


def dims_of(stage): return TINY if stage == 1 else STAGE2_TINY


@pytest.fixture(scope='module')
def official():
    "The official step's result for each stage and float type (computed once)."
    return {(stage, dtype): official_after_step(stage, dims_of(stage), dtype)
            for stage in (1, 2) for dtype in (torch.float32, torch.float64)}


def test_noise_draws_are_the_official_ones():
    "`torch.randn(B, z)` (train_step, CA) gives the numbers of `FloatTensor(B, z).normal_(0, 1)` (the official trainer and CA_NET)."
    for shape in ((BATCH, 10), (64, 100), (7, 3)):
        torch.manual_seed(5); ours = torch.randn(*shape)
        torch.manual_seed(5); theirs = torch.FloatTensor(*shape).normal_(0, 1)
        assert torch.equal(ours, theirs)


def test_random_draws_in_the_official_order():
    "The RNG state as each CA layer starts: noise z, then Stage-I's CA noise, then Stage-II's, and nothing else between."
    dims = STAGE2_TINY
    state_g, state_d = initial_state(2, dims)
    netG, _ = official_models(2, dims, state_g, state_d)
    G, _ = build_models(2, ModelConfig(**dims))
    load_official(G, state_g)
    real, emb = batch(2, dims)

    def states_at_ca(g, run):
        seen = []
        hooks = [m.register_forward_pre_hook(lambda *_: seen.append(torch.get_rng_state())) for m in (g.STAGE1_G.ca_net, g.ca_net)]
        torch.manual_seed(3)
        run()
        for h in hooks: h.remove()
        return seen + [torch.get_rng_state()]

    official = states_at_ca(netG, lambda: netG(emb, FloatTensor(BATCH, dims['z_dim']).normal_(0, 1)))
    ours = states_at_ca(G, lambda: G(emb, torch.randn(BATCH, dims['z_dim'])))
    assert len(ours) == len(official) == 3
    assert all(torch.equal(a, b) for a, b in zip(ours, official))
    torch.manual_seed(3); torch.randn(BATCH, dims['z_dim'])
    assert torch.equal(official[0], torch.get_rng_state())            # Stage-I's CA starts right after the noise
    assert not torch.equal(official[0], official[1])                  # ... and draws its own noise before Stage-II's


# The official formula is compared in float32, where it agrees to the bit. Our logits form rounds differently, and
# Adam's first step, lr * g / (|g| + 1e-8), is lr * sign(g) for all but the smallest gradients: in float32 a D
# gradient entry of about 1e-8 can take the other sign from that rounding alone, and the changed D then tips small G
# gradients, so single weights end 2 * lr = 4e-4 apart (seen under AVX2 kernels). In float64 rounding stays far below
# Adam's eps, so there the comparison measures the formulas, not the luck of the rounding.
CASES = [('bce-sigmoid', torch.float32, 1e-6), ('bce', torch.float64, 1e-4)]


@pytest.mark.parametrize('stage', [1, 2])
@pytest.mark.parametrize('loss, dtype, tol', CASES)
def test_one_step_matches_the_official_step(stage, loss, dtype, tol, official):
    netG, netD, (err_d, err_g) = official[stage, dtype]
    G, D, parts = ours_after_step(stage, dims_of(stage), loss, dtype)
    assert abs(parts['d_loss'].item() - err_d) <= 1e-5 and abs(parts['g_loss'].item() - err_g) <= 1e-5, (parts, err_d, err_g)
    (dg, kg), (dd, kd) = max_diff(G, netG), max_diff(D, netD)
    print(f'Stage-{"I" * stage}, {loss}, {dtype}: max |ours - official| G {dg:.2e} ({kg}), D {dd:.2e} ({kd})')
    assert dg <= tol and dd <= tol
    assert counts_differ(G, netG) == counts_differ(D, netD) == []


@pytest.mark.parametrize('stage, model, train', [(1, {}, {'g_cond': 'grad'}), (2, {}, {'g_cond': 'grad'}),
                                                 (2, {'stage1_in_stage2': 'eval'}, {})])
@pytest.mark.parametrize('loss, dtype, tol', CASES)
def test_the_comparison_fails_without_the_official_choices(stage, model, train, loss, dtype, tol, official):
    "The same comparison, with the condition attached in the G loss or Stage-I in eval mode: the weights differ."
    netG, netD, _ = official[stage, dtype]
    G, D, _ = ours_after_step(stage, dims_of(stage), loss, dtype, model=model, train=train)
    (dg, kg), (dd, kd) = max_diff(G, netG), max_diff(D, netD)
    counts = counts_differ(G, netG)
    print(f'Stage-{"I" * stage}, {loss}, {dtype} with {model or train}: max |ours - official| G {dg:.2e} ({kg}), D {dd:.2e} ({kd})'
          + (f'; {len(counts)} BatchNorm batch counts differ, e.g. {counts[0]}' if counts else ''))
    assert max(dg, dd) > tol


def test_birds_stage1_step_matches_the_official_step():
    "The full birds widths (GF_DIM 128, DF_DIM 64, N_c 128, N_z 100, 1024-d text) at Stage-I, batch 8 to keep it short."
    dims = dict(gf_dim=128, df_dim=64, condition_dim=128, z_dim=100, text_dim=1024, r_num=4)
    t0 = time.time()
    netG, netD, _ = official_after_step(1, dims, n=8)
    G, D, _ = ours_after_step(1, dims, 'bce-sigmoid', n=8)
    (dg, kg), (dd, kd) = max_diff(G, netG), max_diff(D, netD)
    print(f'Stage-I birds widths: max |ours - official| G {dg:.2e} ({kg}), D {dd:.2e} ({kd}); {time.time() - t0:.1f} s')
    assert dg <= 1e-6 and dd <= 1e-6 and counts_differ(G, netG) == counts_differ(D, netD) == []
