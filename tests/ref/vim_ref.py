#!/usr/bin/env python3
"""vim_ref.py: the float64 PyTorch reference for Vision Mamba (Vim) with Memba adapters, behind
tests/fixtures/vim-*/expected.safetensors.

A plain transcription of docs/vim-spec.md:
  - patch embedding (a conv with kernel = stride = patch, written as the conv itself here), the cls
    token in the middle of the patch sequence, absolute position embedding;
  - per layer the bidirectional "v2" mixer: in_proj shared, a forward branch (conv1d, x_proj,
    dt_proj, A_log, D) on tokens 0..L-1 and a backward branch (the *_b tensors) on the flipped
    sequence, gated outputs averaged (if_divide_out), out_proj shared; pre-norm residual stream;
  - final rmsnorm, the cls token's row, the classification head;
  - Memba: LoRA (PEFT semantics, alpha / r) on in_proj and out_proj; the LIM gate (docs/memba-spec.md
    section 3, memba_ref.py lim_gate) placed either `shared` (one membrane over z in token order,
    the backward branch gated by its flip) or `per_direction` (a membrane per branch, each over its
    own branch's z in that branch's order), with the cross-layer transfer per membrane;
  - mean cross-entropy over the images' labels, and autograd gradients of every LoRA tensor and of
    the head (trained with the adapter).
Everything is float64. The language model's pieces (safetensors I/O, rmsnorm, the LIM gate) come
from memba_ref.py beside this file, so the two references share them.

Usage:
  python3 tests/ref/vim_ref.py selfcheck            the bidirectional mixer in its two forms (flip
                                                     after in_proj; anti-causal conv and backward
                                                     scan in original order), the Vim-T/S/B
                                                     parameter counts of the spec, the Memba count
  python3 tests/ref/vim_ref.py make DIR --case NAME  write a tiny case (config.json, model.safetensors,
                                                     adapter files, case.json) with seeded weights
  python3 tests/ref/vim_ref.py write DIR [--force]   expected.safetensors (float32) and
                                                     expected_f64.safetensors (logits, loss)
  python3 tests/ref/vim_ref.py check DIR...          recompute and compare, exit 1 beyond tolerance

Needs numpy and torch (Debian bookworm: apt-get install python3-torch python3-numpy).
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from memba_ref import read_safetensors, write_safetensors, rmsnorm, lim_gate, lim_chunk_len  # noqa: E402

DT = torch.float64
torch.set_default_dtype(DT)

# ---------------------------------------------------------------------------------------------
# Config (spec section 5) and state-dict shapes (section 4).

UNSUPPORTED = {  # key: the value that is the only one supported
    'if_rope': False, 'bimamba_type': 'v2', 'use_double_cls_token': False, 'if_bidirectional': False,
    'rms_norm': True, 'if_cls_token': True, 'use_middle_cls_token': True, 'if_abs_pos_embed': True,
}


def normalise_config(raw):
    c = dict(raw)
    for k, want in UNSUPPORTED.items():
        if k in c and c[k] != want:
            raise ValueError(f'config: {k} = {c[k]!r} is not supported (only {want!r})')
    if c.get('flip_img_sequences_ratio', -1) > 0:
        raise ValueError('config: flip_img_sequences_ratio > 0 is not supported')
    if 'if_devide_out' in c and 'if_divide_out' not in c:  # MambaPEFT's spelling
        c['if_divide_out'] = c['if_devide_out']
    c.setdefault('if_divide_out', True)
    c.setdefault('stride', c['patch_size'])
    if c['stride'] != c['patch_size']:
        raise ValueError(f'config: stride {c["stride"]} != patch_size {c["patch_size"]} is not supported')
    d = c['embed_dim']
    c.setdefault('d_state', 16)
    c.setdefault('d_conv', 4)
    c.setdefault('expand', 2)
    c.setdefault('norm_epsilon', 1e-5)
    if c.get('dt_rank', 'auto') == 'auto':
        c['dt_rank'] = math.ceil(d / 16)
    c['d_inner'] = c['expand'] * d
    c['grid'] = (c['img_size'] - c['patch_size']) // c['stride'] + 1
    c['n_patches'] = c['grid'] ** 2
    c['seq_len'] = c['n_patches'] + 1
    c['cls_pos'] = c['n_patches'] // 2
    return c


def shapes(c):
    d, E, N, K, R, p = c['embed_dim'], c['d_inner'], c['d_state'], c['d_conv'], c['dt_rank'], c['patch_size']
    s = {
        'patch_embed.proj.weight': [d, c['channels'], p, p], 'patch_embed.proj.bias': [d],
        'cls_token': [1, 1, d], 'pos_embed': [1, c['seq_len'], d], 'norm_f.weight': [d],
        'head.weight': [c['num_classes'], d], 'head.bias': [c['num_classes']],
    }
    for i in range(c['depth']):
        q = f'layers.{i}.'
        s[q + 'norm.weight'] = [d]
        s[q + 'mixer.in_proj.weight'] = [2 * E, d]
        s[q + 'mixer.out_proj.weight'] = [d, E]
        for b in ('', '_b'):
            s[q + f'mixer.conv1d{b}.weight'] = [E, 1, K]
            s[q + f'mixer.conv1d{b}.bias'] = [E]
            s[q + f'mixer.x_proj{b}.weight'] = [R + 2 * N, E]
            s[q + f'mixer.dt_proj{b}.weight'] = [E, R]
            s[q + f'mixer.dt_proj{b}.bias'] = [E]
        s[q + 'mixer.A_log'] = [E, N]
        s[q + 'mixer.A_b_log'] = [E, N]
        s[q + 'mixer.D'] = [E]
        s[q + 'mixer.D_b'] = [E]
    return s


def load_model(case_dir):
    with open(os.path.join(case_dir, 'config.json')) as f:
        c = normalise_config(json.load(f))
    raw = read_safetensors(os.path.join(case_dir, 'model.safetensors'))
    raw = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in raw.items()}
    want = shapes(c)
    for k in raw:
        if k not in want:
            raise ValueError(f'unknown tensor {k}')
    W = {}
    for k, shp in want.items():
        if k not in raw:
            raise ValueError(f'missing tensor {k}')
        if list(raw[k].shape) != shp:
            raise ValueError(f'{k}: shape {list(raw[k].shape)}, expected {shp}')
        W[k] = torch.tensor(raw[k].astype(np.float64))
    return c, W


# ---------------------------------------------------------------------------------------------
# Forward (spec sections 2-3).

def branch(x, u_gate, W, q, b, c):
    """One direction's SSM on x [B, L, E] in its own time order (causal conv, scan): y [B, L, E].
    b is '' (forward) or '_b' (backward); u_gate unused here (the gate is applied by the caller)."""
    Bsz, L, E = x.shape
    N, K, R = c['d_state'], c['d_conv'], c['dt_rank']
    cw = W[q + f'mixer.conv1d{b}.weight'][:, 0, :]  # [E, K]
    xp = torch.cat([torch.zeros(Bsz, K - 1, E), x], 1)
    xc = sum(cw[:, k] * xp[:, k:k + L] for k in range(K)) + W[q + f'mixer.conv1d{b}.bias']
    u = F.silu(xc)
    dbc = u @ W[q + f'mixer.x_proj{b}.weight'].t()
    dl, Bm, Cm = dbc[..., :R], dbc[..., R:R + N], dbc[..., R + N:]
    delta = F.softplus(dl @ W[q + f'mixer.dt_proj{b}.weight'].t() + W[q + f'mixer.dt_proj{b}.bias'], beta=1.0, threshold=20.0)
    A = -torch.exp(W[q + ('mixer.A_log' if b == '' else 'mixer.A_b_log')])
    D = W[q + ('mixer.D' if b == '' else 'mixer.D_b')]
    s = torch.zeros(Bsz, E, N)
    ys = []
    for t in range(L):
        dt = delta[:, t, :, None]
        s = torch.exp(dt * A) * s + dt * Bm[:, t, None, :] * u[:, t, :, None]
        ys.append((s * Cm[:, t, None, :]).sum(-1) + D * u[:, t])
    return torch.stack(ys, 1)


def branch_backward_original_order(x, W, q, c):
    """The backward branch in original token order (the spec's equivalent form, for selfcheck):
    anti-causal conv x~_t = bias + sum_k w[k] x_{t+(K-1)-k} (x_s = 0 for s >= L), and the scan
    from t = L-1 down to 0. Returns y^b indexed by original token t (= flip of branch(flip(x)))."""
    Bsz, L, E = x.shape
    N, K, R = c['d_state'], c['d_conv'], c['dt_rank']
    cw = W[q + 'mixer.conv1d_b.weight'][:, 0, :]
    xp = torch.cat([x, torch.zeros(Bsz, K - 1, E)], 1)
    xc = sum(cw[:, k] * xp[:, (K - 1 - k):(K - 1 - k) + L] for k in range(K)) + W[q + 'mixer.conv1d_b.bias']
    u = F.silu(xc)
    dbc = u @ W[q + 'mixer.x_proj_b.weight'].t()
    dl, Bm, Cm = dbc[..., :R], dbc[..., R:R + N], dbc[..., R + N:]
    delta = F.softplus(dl @ W[q + 'mixer.dt_proj_b.weight'].t() + W[q + 'mixer.dt_proj_b.bias'], beta=1.0, threshold=20.0)
    A = -torch.exp(W[q + 'mixer.A_b_log'])
    s = torch.zeros(Bsz, E, N)
    ys = [None] * L
    for t in range(L - 1, -1, -1):
        dt = delta[:, t, :, None]
        s = torch.exp(dt * A) * s + dt * Bm[:, t, None, :] * u[:, t, :, None]
        ys[t] = (s * Cm[:, t, None, :]).sum(-1) + W[q + 'mixer.D_b'] * u[:, t]
    return torch.stack(ys, 1)


class Adapter:
    """LoRA on in_proj / out_proj (alpha / r) and the LIM settings (None: no LIM)."""

    def __init__(self, r=0, alpha=0.0, targets=(), lim=None, bidir='shared'):
        self.r, self.alpha, self.targets, self.lim, self.bidir = r, alpha, list(targets), lim, bidir
        self.scale = alpha / r if r else 0.0


def lora_key(l, target, which):
    return f'layers.{l}.mixer.{target}.lora_{which}.weight'


def lin(x, Wt, params, ad, l, target):
    y = x @ Wt.t()
    if target in ad.targets:
        y = y + ad.scale * ((x @ params[lora_key(l, target, 'A')].t()) @ params[lora_key(l, target, 'B')].t())
    return y


def patch_tokens(c, W, images):
    """images [B, C, H, W] -> the embedded sequence s [B, L, d] (cls in the middle, pos added)."""
    P = F.conv2d(images, W['patch_embed.proj.weight'], W['patch_embed.proj.bias'], stride=c['stride'])
    Bsz, d = P.shape[0], P.shape[1]
    p = P.flatten(2).transpose(1, 2)  # [B, M, d], row-major over the grid
    pos = c['cls_pos']
    cls = W['cls_token'].expand(Bsz, 1, d)
    s = torch.cat([p[:, :pos], cls, p[:, pos:]], 1)
    return s + W['pos_embed'][0]


def forward(c, W, ad, params, images, head=None, backward_form='flip'):
    """images [B, C, H, W] (normalised) -> (logits [B, classes], hidden list [B, L, d], lim_v
    list: per layer [B, L, E] (shared) or a pair (forward order, backward order) per_direction).
    head: (weight, bias) tensors to use instead of W's (the trainable head)."""
    E, eps = c['d_inner'], c['norm_epsilon']
    h = patch_tokens(c, W, images)
    Bsz, L, _ = h.shape
    lim = ad.lim
    per_dir = lim is not None and ad.bidir == 'per_direction'
    if lim:
        cl = lim_chunk_len(lim, L)
        U0 = torch.zeros(Bsz, cl, E)
        U0b = torch.zeros(Bsz, cl, E) if per_dir else None
    hidden, lim_vs = [], []
    for l in range(c['depth']):
        q = f'layers.{l}.'
        a = rmsnorm(h, W[q + 'norm.weight'], eps)
        xz = lin(a, W[q + 'mixer.in_proj.weight'], params, ad, l, 'in_proj')
        x, z = xz[..., :E], xz[..., E:]
        yf = branch(x, None, W, q, '', c)
        if backward_form == 'flip':
            yb = branch(x.flip(1), None, W, q, '_b', c).flip(1)  # y^b_{L-1-t}, at original index t
        else:
            yb = branch_backward_original_order(x, W, q, c)
        if not lim:
            o = (yf + yb) * F.silu(z)
        elif not per_dir:
            v, U0 = lim_gate(z, U0, lim)
            lim_vs.append(v)
            o = (yf + yb) * F.silu(v)  # the backward branch is gated by flip(v), i.e. v at original t
        else:
            vf, U0 = lim_gate(z, U0, lim)
            vb, U0b = lim_gate(z.flip(1), U0b, lim)  # backward order
            lim_vs.append((vf, vb))
            o = yf * F.silu(vf) + yb * F.silu(vb.flip(1))
        if c['if_divide_out']:
            o = o / 2
        h = h + lin(o, W[q + 'mixer.out_proj.weight'], params, ad, l, 'out_proj')
        hidden.append(h)
    f = rmsnorm(h, W['norm_f.weight'], eps)
    feat = f[:, c['cls_pos']]
    hw, hb = head if head is not None else (W['head.weight'], W['head.bias'])
    return feat @ hw.t() + hb, hidden, lim_vs


# ---------------------------------------------------------------------------------------------
# Cases: config.json, model.safetensors, adapter (adapter_config.json + adapter_model.safetensors),
# case.json (images, labels).

CASES = {
    # img 12, patch 4, RGB: a 3 x 3 grid, L = 10, cls at 4 (an odd patch count)
    'vim-tiny': dict(cfg=dict(img_size=12, patch_size=4, channels=3, embed_dim=16, depth=2, d_state=8, num_classes=5), adapter=None),
    # Memba, shared LIM: T = 2 chunks of 5 (no remainder), mean transfer
    'vim-tiny-memba-shared': dict(cfg=dict(img_size=12, patch_size=4, channels=3, embed_dim=16, depth=3, d_state=8, num_classes=5),
                                  adapter=dict(r=4, alpha=8, targets=['in_proj', 'out_proj'], bidir='shared',
                                               lim=dict(chunks=2, tau=0.5, v_th=0.3, output='post_reset', reset_grad='mask', cross_layer='mean'))),
    # per-direction LIM: grayscale 8 x 8 with patch 2 (a 4 x 4 grid, L = 17, cls at 8), T = 4 chunks of 4
    # plus one remainder token, first-chunk transfer, the triangle surrogate
    'vim-tiny-memba-perdir': dict(cfg=dict(img_size=8, patch_size=2, channels=1, embed_dim=12, depth=2, d_state=4, num_classes=3, if_devide_out=True),
                                  adapter=dict(r=3, alpha=6, targets=['in_proj', 'out_proj'], bidir='per_direction',
                                               lim=dict(chunks=4, tau=0.6, v_th=0.25, output='post_reset', reset_grad='triangle', surrogate_width=1.0, cross_layer='first'))),
}


def make_case(case_dir, name, seed=1):
    spec = CASES[name]
    raw = dict(arch='vim', **spec['cfg'])
    c = normalise_config(raw)
    g = torch.Generator().manual_seed(seed)

    def rnd(shape, lo, hi):
        return (lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)).numpy().astype(np.float32)

    W = {}
    for k, shp in shapes(c).items():
        n = k.split('.')[-1] if not k.endswith('.weight') else k.split('.')[-2]
        if k.endswith('norm.weight') or k == 'norm_f.weight':
            W[k] = rnd(shp, 0.7, 1.3)
        elif 'A_log' in k or 'A_b_log' in k:
            W[k] = np.log(np.tile(np.arange(1, shp[1] + 1, dtype=np.float32), (shp[0], 1))) + rnd(shp, -0.2, 0.2)
        elif k.endswith('mixer.D') or k.endswith('mixer.D_b'):
            W[k] = rnd(shp, 0.5, 1.5)
        elif 'dt_proj' in k and k.endswith('bias'):
            W[k] = np.log(np.expm1(rnd(shp, 0.01, 0.2))).astype(np.float32)  # softplus^-1 of dt in [0.01, 0.2]
        else:
            fan_in = int(np.prod(shp[1:])) if len(shp) > 1 else 1
            bound = 1.0 / math.sqrt(max(1, fan_in)) if n not in ('cls_token', 'pos_embed') else 0.5
            W[k] = rnd(shp, -bound, bound) * (2.0 if 'head' in k else 1.0)
    os.makedirs(case_dir, exist_ok=True)
    with open(os.path.join(case_dir, 'config.json'), 'w') as f:
        json.dump(raw, f, indent=1)
    write_safetensors(os.path.join(case_dir, 'model.safetensors'), W)
    B = 2
    images = rnd([B, c['channels'], c['img_size'], c['img_size']], -2.0, 2.0)
    labels = [int(v) for v in torch.randint(0, c['num_classes'], (B,), generator=g)]
    case = dict(images_shape=list(images.shape), labels=labels,
                notes=f'{name}: seeded random weights (seed {seed}); images are normalised pixels in [-2, 2]')
    write_safetensors(os.path.join(case_dir, 'images.safetensors'), {'images': images})
    with open(os.path.join(case_dir, 'case.json'), 'w') as f:
        json.dump(case, f, indent=1)
    a = spec['adapter']
    if a:
        E, d = c['d_inner'], c['embed_dim']
        dims = {'in_proj': (d, 2 * E), 'out_proj': (E, d)}
        P = {}
        for l in range(c['depth']):
            for t in a['targets']:
                fin, fout = dims[t]
                P[lora_key(l, t, 'A')] = rnd([a['r'], fin], -0.5, 0.5)
                P[lora_key(l, t, 'B')] = rnd([fout, a['r']], -0.3, 0.3)  # non-zero, so the gradients of A are too
        write_safetensors(os.path.join(case_dir, 'adapter_model.safetensors'), P)
        with open(os.path.join(case_dir, 'adapter_config.json'), 'w') as f:
            json.dump(dict(peft_type='LORA', r=a['r'], lora_alpha=a['alpha'], target_modules=a['targets'], lora_dropout=0.0, bias='none'), f, indent=1)
        with open(os.path.join(case_dir, 'memba_config.json'), 'w') as f:
            json.dump(dict(lim=a['lim'], bidir=a['bidir']), f, indent=1)


def load_case(case_dir):
    c, W = load_model(case_dir)
    with open(os.path.join(case_dir, 'case.json')) as f:
        case = json.load(f)
    images = torch.tensor(read_safetensors(os.path.join(case_dir, 'images.safetensors'))['images'].astype(np.float64))
    ad, params = Adapter(), {}
    if os.path.exists(os.path.join(case_dir, 'adapter_config.json')):
        with open(os.path.join(case_dir, 'adapter_config.json')) as f:
            ac = json.load(f)
        lim, bidir = None, 'shared'
        mp = os.path.join(case_dir, 'memba_config.json')
        if os.path.exists(mp):
            with open(mp) as f:
                mc = json.load(f)
            lim, bidir = mc.get('lim'), mc.get('bidir', 'shared')
        ad = Adapter(ac['r'], ac['lora_alpha'], ac['target_modules'], lim, bidir)
        params = {k: torch.tensor(v.astype(np.float64), requires_grad=True)
                  for k, v in read_safetensors(os.path.join(case_dir, 'adapter_model.safetensors')).items()}
    return c, W, ad, params, images, case


def compute(case_dir):
    c, W, ad, params, images, case = load_case(case_dir)
    hw = W['head.weight'].clone().requires_grad_(True)
    hb = W['head.bias'].clone().requires_grad_(True)
    logits, hidden, lim_vs = forward(c, W, ad, params, images, head=(hw, hb))
    loss = F.cross_entropy(logits, torch.tensor(case['labels']))
    loss.backward()
    out = {'logits': logits.detach(), 'loss': loss.detach().reshape(1)}
    for l, h in enumerate(hidden):
        out[f'hidden.{l}'] = h.detach()
    for l, v in enumerate(lim_vs):
        if isinstance(v, tuple):
            out[f'lim_v.{l}'], out[f'lim_v_b.{l}'] = v[0].detach(), v[1].detach()
        else:
            out[f'lim_v.{l}'] = v.detach()
    for k, p in params.items():
        out[f'grad.{k}'] = p.grad.detach()
    out['grad.head.weight'], out['grad.head.bias'] = hw.grad.detach(), hb.grad.detach()
    return out


def write(case_dir, force=False):
    dst = os.path.join(case_dir, 'expected.safetensors')
    if os.path.exists(dst) and not force:
        raise SystemExit(f'{dst} exists (--force to overwrite)')
    out = compute(case_dir)
    write_safetensors(dst, {k: v.numpy().astype(np.float32) for k, v in out.items()})
    write_safetensors(os.path.join(case_dir, 'expected_f64.safetensors'), {k: out[k].numpy() for k in ('logits', 'loss')})


def check(case_dirs):
    ok = True
    for case_dir in case_dirs:
        out = compute(case_dir)
        want = read_safetensors(os.path.join(case_dir, 'expected.safetensors'))
        want64 = read_safetensors(os.path.join(case_dir, 'expected_f64.safetensors'))
        for k in sorted(set(out) | set(want)):
            if k not in out or k not in want:
                print(f'{case_dir}: {k} missing on one side')
                ok = False
                continue
            a, b = out[k].numpy(), want[k].astype(np.float64)
            diff, bmax = float(np.abs(a - b).max()), float(np.abs(b).max())
            lim = (1e-5 * bmax) if k.startswith('grad.') else 1e-6 * max(1.0, bmax)
            good = diff <= lim
            ok &= good
            print(f'{os.path.basename(case_dir)} {k}: max|a-b| {diff:.2e} (max|b| {bmax:.3g}) {"ok" if good else "FAIL"}')
        for k in ('logits', 'loss'):
            d64 = float(np.abs(out[k].numpy() - want64[k]).max())
            good = d64 <= 1e-9 * max(1.0, float(np.abs(want64[k]).max()))
            ok &= good
            print(f'{os.path.basename(case_dir)} {k} (f64): max|a-b| {d64:.2e} {"ok" if good else "FAIL"}')
    return ok


def selfcheck():
    ok = True
    # 1. the two forms of the backward branch
    for name in CASES:
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            make_case(tmp, name)
            c, W, ad, params, images, _ = load_case(tmp)
            a, h1, _ = forward(c, W, ad, params, images)
            b, h2, _ = forward(c, W, ad, params, images, backward_form='original')
            d = max(float((a - b).abs().max()), max(float((x - y).abs().max()) for x, y in zip(h1, h2)))
            print(f'{name}: flip form vs original-order form of the backward branch: max|a-b| {d:.2e}')
            ok &= d <= 1e-12
    # 2. the spec's parameter counts (with the 1000-class head) and the Memba count for Vim-S
    for nm, d, want in (('Vim-T', 192, 7148008), ('Vim-S', 384, 25796584), ('Vim-B', 768, 97598440)):
        c = normalise_config(dict(img_size=224, patch_size=16, channels=3, embed_dim=d, depth=24, num_classes=1000))
        n = sum(int(np.prod(s)) for s in shapes(c).values())
        print(f'{nm}: {n} parameters (spec: {want})')
        ok &= n == want
    c = normalise_config(dict(img_size=224, patch_size=16, channels=3, embed_dim=384, depth=24, num_classes=1000))
    E, d = c['d_inner'], c['embed_dim']
    memba = c['depth'] * 64 * ((d + 2 * E) + (E + d))
    print(f'Vim-S Memba LoRA r=64 on in_proj + out_proj: {memba} parameters (spec: 4718592)')
    ok &= memba == 4718592
    return ok


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    sub.add_parser('selfcheck')
    p = sub.add_parser('make')
    p.add_argument('dir')
    p.add_argument('--case', required=True, choices=sorted(CASES))
    p = sub.add_parser('write')
    p.add_argument('dir')
    p.add_argument('--force', action='store_true')
    p = sub.add_parser('check')
    p.add_argument('dirs', nargs='+')
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.cmd == 'selfcheck':
        return 0 if selfcheck() else 1
    if a.cmd == 'make':
        make_case(a.dir, a.case)
        return 0
    if a.cmd == 'write':
        write(a.dir, a.force)
        return 0
    return 0 if check(a.dirs) else 1


if __name__ == '__main__':
    sys.exit(main())
