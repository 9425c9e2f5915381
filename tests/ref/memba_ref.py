#!/usr/bin/env python3
"""memba_ref.py: the float64 PyTorch reference behind tests/fixtures/*/expected.safetensors.

A plain, deliberately unoptimised transcription of docs/memba-spec.md sections 1-4:
  1. the Mamba-1 language model (HF `-hf` and original state-spaces checkpoint layouts),
  2. LoRA with HF PEFT semantics on in_proj / out_proj / x_proj / dt_proj and the in_proj.x /
     in_proj.z halves,
  3. the LIM gate (chunks or chunk_size, tau, v_th, post/pre-reset output, mask or triangle reset
     gradient) with the cross-layer transfer mean / first / none,
  4. the mean cross-entropy over labels != -100, LoRA gradients (torch autograd), AdamW
     (torch.optim.AdamW + clip_grad_norm_), greedy continuation and prompt log-likelihood.
Everything is float64; the float32 checkpoint tensors are widened on load.

Usage:
  python3 tests/ref/memba_ref.py check DIR          regenerate DIR's expected values, compare them
                                                     with DIR/expected.safetensors (+ _f64), exit 1
                                                     beyond tolerance
  python3 tests/ref/memba_ref.py write DIR [--out FILE] [--greedy-tokens G] [--force]
                                                     write a fresh expected.safetensors (float32) and
                                                     expected_f64.safetensors (logits, loss)

Needs only numpy and torch (Debian bookworm: apt-get install python3-torch python3-numpy).
safetensors files are read and written by the small functions below, not by the safetensors package.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

DT = torch.float64
torch.set_default_dtype(DT)

# ---------------------------------------------------------------------------------------------
# safetensors: 8-byte little-endian header length, JSON header, raw little-endian tensor bytes.

_ST_DTYPES = {'F64': '<f8', 'F32': '<f4', 'F16': '<f2', 'I64': '<i8', 'I32': '<i4', 'I16': '<i2',
              'I8': 'i1', 'U8': 'u1', 'BOOL': '?'}


def read_safetensors(path):
    """Returns {name: numpy array} (copies, native byte order). BF16 is widened to float32."""
    with open(path, 'rb') as f:
        data = f.read()
    (n,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + n].decode('utf-8'))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == '__metadata__':
            continue
        start, end = info['data_offsets']
        buf = data[base + start:base + end]
        if info['dtype'] == 'BF16':
            arr = (np.frombuffer(buf, '<u2').astype('<u4') << 16).view('<f4')
        elif info['dtype'] in _ST_DTYPES:
            arr = np.frombuffer(buf, _ST_DTYPES[info['dtype']])
        else:
            raise ValueError(f'{path}: tensor {name}: unsupported dtype {info["dtype"]}')
        out[name] = arr.reshape(info['shape']).astype(arr.dtype.newbyteorder('='))
    return out


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: numpy array of float32 / float64 / int}. Names are written sorted."""
    codes = {np.dtype('float64'): 'F64', np.dtype('float32'): 'F32', np.dtype('int64'): 'I64',
             np.dtype('int32'): 'I32'}
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        code = codes[arr.dtype]
        raw = arr.astype(arr.dtype.newbyteorder('<')).tobytes()
        header[name] = {'dtype': code, 'shape': list(arr.shape), 'data_offsets': [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header['__metadata__'] = {str(k): str(v) for k, v in metadata.items()}
    head = json.dumps(header, separators=(',', ':')).encode('utf-8')
    head += b' ' * (-len(head) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(head)))
        f.write(head)
        for raw in blobs:
            f.write(raw)


# ---------------------------------------------------------------------------------------------
# Model: config + weights, both checkpoint layouts (spec section 1, "Checkpoints").

class Model:
    pass


def load_model(case_dir):
    cfg = json.load(open(os.path.join(case_dir, 'config.json')))
    w = read_safetensors(os.path.join(case_dir, 'model.safetensors'))
    m = Model()
    if 'hidden_size' in cfg:  # HF `-hf` layout
        m.d = cfg['hidden_size']
        m.n_layer = cfg['num_hidden_layers']
        m.N = cfg['state_size']
        m.K = cfg['conv_kernel']
        m.E = cfg.get('intermediate_size') or cfg['expand'] * m.d
        R = cfg.get('time_step_rank', 'auto')
        m.eps = cfg['layer_norm_epsilon']
        m.use_bias = cfg['use_bias']
        m.conv_bias = cfg['use_conv_bias']
        m.tied = cfg.get('tie_word_embeddings', True)
        emb_name = 'backbone.embeddings.weight'
        vocab = cfg['vocab_size']
    elif 'd_model' in cfg:  # original state-spaces layout (MambaConfig + Mamba simple mixer defaults)
        if not cfg.get('rms_norm', True):
            raise ValueError('state-spaces config with rms_norm false (LayerNorm) is not Mamba-1 as specified')
        ssm = cfg.get('ssm_cfg') or {}
        if ssm.get('layer', 'Mamba1') not in ('Mamba1',):
            raise ValueError(f'ssm_cfg.layer {ssm["layer"]} is not Mamba-1')
        m.d = cfg['d_model']
        m.n_layer = cfg['n_layer']
        m.N = ssm.get('d_state', 16)
        m.K = ssm.get('d_conv', 4)
        m.E = ssm.get('expand', 2) * m.d
        R = ssm.get('dt_rank', 'auto')
        m.eps = cfg.get('norm_epsilon', 1e-5)
        m.use_bias = ssm.get('bias', False)
        m.conv_bias = ssm.get('conv_bias', True)
        m.tied = cfg.get('tie_embeddings', True)
        emb_name = 'backbone.embedding.weight'
        mult = cfg.get('pad_vocab_size_multiple', 1)
        vocab = cfg['vocab_size'] + (-cfg['vocab_size'] % mult)
    else:
        raise ValueError('config.json is neither HF (hidden_size) nor state-spaces (d_model) layout')
    m.R = math.ceil(m.d / 16) if R == 'auto' else int(R)

    def t(name):
        if name not in w:
            raise KeyError(f'model.safetensors lacks {name}')
        return torch.from_numpy(w[name].astype(np.float64))

    m.emb = t(emb_name)
    m.V = m.emb.shape[0]
    if m.V != vocab:
        raise ValueError(f'embedding has {m.V} rows, config says vocab {vocab}')
    if 'lm_head.weight' in w:
        m.head = t('lm_head.weight')
    elif m.tied:
        m.head = m.emb
    else:
        raise ValueError('untied config but no lm_head.weight')
    m.norm_f = t('backbone.norm_f.weight')
    m.layers = []
    for l in range(m.n_layer):
        p = f'backbone.layers.{l}.'
        L = {
            'norm': t(p + 'norm.weight'),
            'in_w': t(p + 'mixer.in_proj.weight'),
            'in_b': t(p + 'mixer.in_proj.bias') if m.use_bias else None,
            'conv_w': t(p + 'mixer.conv1d.weight')[:, 0, :],  # [E, K]
            'conv_b': t(p + 'mixer.conv1d.bias') if m.conv_bias else None,
            'x_w': t(p + 'mixer.x_proj.weight'),
            'dt_w': t(p + 'mixer.dt_proj.weight'),
            'dt_b': t(p + 'mixer.dt_proj.bias'),
            'A_log': t(p + 'mixer.A_log'),
            'D': t(p + 'mixer.D'),
            'out_w': t(p + 'mixer.out_proj.weight'),
            'out_b': t(p + 'mixer.out_proj.bias') if m.use_bias else None,
        }
        assert L['in_w'].shape == (2 * m.E, m.d) and L['x_w'].shape == (m.R + 2 * m.N, m.E)
        m.layers.append(L)
    return m


# ---------------------------------------------------------------------------------------------
# Adapter: PEFT LoRA files + memba_config.json (spec sections 2 and 3).

TARGETS = ['in_proj', 'in_proj.x', 'in_proj.z', 'out_proj', 'x_proj', 'dt_proj']
LIM_DEFAULTS = {'chunks': 4, 'tau': 0.5, 'v_th': 1.0, 'output': 'post_reset', 'reset_grad': 'mask',
                'surrogate_width': 1.0, 'cross_layer': 'mean'}


def lora_name(l, target, which):
    return f'base_model.model.backbone.layers.{l}.mixer.{target}.lora_{which}.weight'


class Adapter:
    def __init__(self):
        self.scale = 0.0
        self.targets = []
        self.lim = None
        self.names = []  # PEFT tensor names, in file order


def load_adapter(case_dir, m):
    """Returns (Adapter, {peft name: float64 tensor}). No adapter files = no LoRA, no LIM."""
    ad = Adapter()
    params = {}
    cfg_path = os.path.join(case_dir, 'adapter_config.json')
    if os.path.exists(cfg_path):
        pc = json.load(open(cfg_path))
        if pc.get('peft_type', 'LORA') != 'LORA':
            raise ValueError(f'peft_type {pc["peft_type"]} unsupported')
        for key in ('use_dora', 'lora_bias', 'fan_in_fan_out', 'modules_to_save', 'layers_to_transform',
                    'exclude_modules', 'use_qalora', 'target_parameters'):
            if pc.get(key):
                raise ValueError(f'adapter_config.json: {key} changes the math and is unsupported')
        if pc.get('bias', 'none') != 'none':
            raise ValueError(f'adapter_config.json: bias {pc["bias"]} unsupported')
        r, alpha = pc['r'], pc.get('lora_alpha', 8)
        for key, base in (('rank_pattern', r), ('alpha_pattern', alpha)):
            for k, v in (pc.get(key) or {}).items():
                if v != base:
                    raise ValueError(f'adapter_config.json: {key} entry {k} differs')
        if pc.get('lora_dropout', 0.0):
            # Dropout is random: the golden vectors are computed as in eval mode (dropout = identity).
            print(f'note: lora_dropout {pc["lora_dropout"]} treated as identity (deterministic reference)')
        targets = pc['target_modules']
        targets = [targets] if isinstance(targets, str) else list(targets)
        for tg in targets:
            if tg not in TARGETS:
                raise ValueError(f'unknown LoRA target {tg}')
        if 'in_proj' in targets and ('in_proj.x' in targets or 'in_proj.z' in targets):
            raise ValueError('in_proj overlaps in_proj.x / in_proj.z')
        ad.targets = targets
        ad.scale = alpha / math.sqrt(r) if pc.get('use_rslora') else alpha / r
        w = read_safetensors(os.path.join(case_dir, 'adapter_model.safetensors'))
        for l in range(m.n_layer):
            for tg in TARGETS:
                if tg not in targets:
                    continue
                for which in 'AB':
                    name = lora_name(l, tg, which)
                    if name not in w:
                        raise KeyError(f'adapter_model.safetensors lacks {name}')
                    params[name] = torch.from_numpy(w[name].astype(np.float64))
        extra = sorted(set(w) - set(params))
        if extra:
            raise ValueError(f'adapter_model.safetensors has tensors for no configured target: {extra[:3]}')
        ad.names = list(params)
    lim_path = os.path.join(case_dir, 'memba_config.json')
    if os.path.exists(lim_path):
        lim = json.load(open(lim_path)).get('lim')
        if lim is not None and lim is not False:
            lim = {} if lim is True else dict(lim)
            if lim.get('chunks') is not None and lim.get('chunk_size') is not None:
                raise ValueError('memba_config.json: give exactly one of chunks / chunk_size')
            full = dict(LIM_DEFAULTS)
            full.update(lim)
            if lim.get('chunk_size') is not None:
                del full['chunks']
            ad.lim = full
    return ad, params


# ---------------------------------------------------------------------------------------------
# Forward (spec section 1 with sections 2 and 3 folded in).

def rmsnorm(v, weight, eps):
    return v / torch.sqrt((v * v).mean(-1, keepdim=True) + eps) * weight


def lora_delta(x, params, l, target, scale):
    """(alpha / r) * lora_B @ (lora_A @ x) for a batch of row vectors x [..., in]."""
    A = params[lora_name(l, target, 'A')]
    B = params[lora_name(l, target, 'B')]
    return scale * ((x @ A.t()) @ B.t())


def lora_linear(x, W, b, params, ad, l, target):
    y = x @ W.t()
    if b is not None:
        y = y + b
    if target in ad.targets:
        y = y + lora_delta(x, params, l, target, ad.scale)
    return y


class TriangleSpike(torch.autograd.Function):
    """S = (A > v_th) with the surrogate dS/dA = max(0, w - |A - v_th|) / w^2."""

    @staticmethod
    def forward(ctx, A, v_th, width):
        ctx.save_for_backward(A)
        ctx.v_th, ctx.width = v_th, width
        return (A > v_th).to(A.dtype)

    @staticmethod
    def backward(ctx, g):
        (A,) = ctx.saved_tensors
        w = ctx.width
        return g * torch.clamp(w - (A - ctx.v_th).abs(), min=0.0) / (w * w), None, None


def lim_chunk_len(lim, L):
    if lim.get('chunk_size') is not None:
        return int(lim['chunk_size'])
    return max(1, L // int(lim['chunks']))


def lim_gate(z, U0, lim):
    """z [B, L, E] -> (v [B, L, E], U0 of the next layer [B, c, E]). U0 [B, c, E] (zeros in layer 0).

    The membrane is one neuron per (slot, channel); the chunk index is its time. A partial last
    chunk updates only its first w slots."""
    Bsz, L, E = z.shape
    c = U0.shape[1]
    tau, v_th = lim['tau'], lim['v_th']
    U = [U0[:, j] for j in range(c)]  # per slot, [B, E]; a list keeps autograd free of in-place writes
    v = [None] * L
    full_chunk_states = []
    after_chunk0 = None
    n_chunks = (L + c - 1) // c
    for i in range(n_chunks):
        for j in range(c):
            t = i * c + j
            if t >= L:
                break
            A = tau * U[j] + z[:, t]
            if lim['reset_grad'] == 'mask':
                S = (A > v_th).to(DT).detach()  # constant: dU/dA = 1 - S
            elif lim['reset_grad'] == 'triangle':
                S = TriangleSpike.apply(A, v_th, float(lim.get('surrogate_width', 1.0)))
            else:
                raise ValueError(f'reset_grad {lim["reset_grad"]}')
            U[j] = A * (1.0 - S)
            if lim['output'] == 'post_reset':
                v[t] = U[j]
            elif lim['output'] == 'pre_reset':
                v[t] = A
            else:
                raise ValueError(f'output {lim["output"]}')
        state = torch.stack(U, 1)
        if i == 0:
            after_chunk0 = state  # slots never reached keep U0
        if (i + 1) * c <= L:
            full_chunk_states.append(state)
    mode = lim['cross_layer']
    if mode == 'mean':
        nxt = torch.stack(full_chunk_states, 0).mean(0) if full_chunk_states else torch.zeros_like(U0)
    elif mode == 'first':
        nxt = after_chunk0
    elif mode == 'none':
        nxt = torch.zeros_like(U0)
    else:
        raise ValueError(f'cross_layer {mode}')
    return torch.stack(v, 1), nxt


def forward(m, ad, params, ids, use_lim=True, skip_targets=()):
    """ids LongTensor [B, L] -> (logits [B, L, V], hidden list [B, L, d], lim_v list [B, L, E]).

    skip_targets: LoRA targets to leave out (only for emulating HF transformers' cross-check)."""
    if skip_targets:
        ad2 = Adapter()
        ad2.scale, ad2.lim, ad2.names = ad.scale, ad.lim, ad.names
        ad2.targets = [t for t in ad.targets if t not in skip_targets]
        ad = ad2
    lim = ad.lim if use_lim else None
    Bsz, L = ids.shape
    E, N, K, R = m.E, m.N, m.K, m.R
    h = m.emb[ids]  # [B, L, d]
    hidden, lim_vs = [], []
    U0 = torch.zeros(Bsz, lim_chunk_len(lim, L), E) if lim else None
    for l, P in enumerate(m.layers):
        a = rmsnorm(h, P['norm'], m.eps)
        xz = lora_linear(a, P['in_w'], P['in_b'], params, ad, l, 'in_proj')
        x, z = xz[..., :E], xz[..., E:]
        if 'in_proj.x' in ad.targets:
            x = x + lora_delta(a, params, l, 'in_proj.x', ad.scale)
        if 'in_proj.z' in ad.targets:
            z = z + lora_delta(a, params, l, 'in_proj.z', ad.scale)
        # causal depthwise conv1d: x~_t = bias + sum_k w[c, k] * x_{t-(K-1)+k}, x_s = 0 for s < 0
        xp = torch.cat([torch.zeros(Bsz, K - 1, E), x], 1)
        xc = sum(P['conv_w'][:, k] * xp[:, k:k + L] for k in range(K))
        if P['conv_b'] is not None:
            xc = xc + P['conv_b']
        u = F.silu(xc)
        dbc = lora_linear(u, P['x_w'], None, params, ad, l, 'x_proj')
        dl, Bm, Cm = dbc[..., :R], dbc[..., R:R + N], dbc[..., R + N:]
        delta = F.softplus(lora_linear(dl, P['dt_w'], P['dt_b'], params, ad, l, 'dt_proj'), beta=1.0, threshold=20.0)
        A = -torch.exp(P['A_log'])  # [E, N]
        s = torch.zeros(Bsz, E, N)
        ys = []
        for t in range(L):
            dt = delta[:, t, :, None]  # [B, E, 1]
            s = torch.exp(dt * A) * s + dt * Bm[:, t, None, :] * u[:, t, :, None]
            ys.append((s * Cm[:, t, None, :]).sum(-1) + P['D'] * u[:, t])
        y = torch.stack(ys, 1)
        if lim:
            g, U0 = lim_gate(z, U0, lim)
            lim_vs.append(g)
        else:
            g = z
        o = y * F.silu(g)
        h = h + lora_linear(o, P['out_w'], P['out_b'], params, ad, l, 'out_proj')
        hidden.append(h)
    logits = rmsnorm(h, m.norm_f, m.eps) @ m.head.t()
    return logits, hidden, lim_vs


def decode_stepwise(m, ad, params, ids):
    """Recurrent token-by-token decode (conv_state, ssm_state, membrane U [c, E] per layer): the
    O(1)-per-token path, defined only for no LIM or LIM with chunk_size + first/none."""
    lim = ad.lim
    Bsz, L = ids.shape
    E, N, K, R = m.E, m.N, m.K, m.R
    c = int(lim['chunk_size']) if lim else 1
    conv = [torch.zeros(Bsz, E, K) for _ in m.layers]
    ssm = [torch.zeros(Bsz, E, N) for _ in m.layers]
    U = [torch.zeros(Bsz, c, E) for _ in m.layers]
    out = []
    with torch.no_grad():
        for t in range(L):
            i, j = divmod(t, c)
            h = m.emb[ids[:, t]]
            hand = torch.zeros(Bsz, E)  # what layer l hands to layer l+1 for slot j while t < c
            for l, P in enumerate(m.layers):
                a = rmsnorm(h, P['norm'], m.eps)
                xz = lora_linear(a, P['in_w'], P['in_b'], params, ad, l, 'in_proj')
                x, z = xz[..., :E], xz[..., E:]
                if 'in_proj.x' in ad.targets:
                    x = x + lora_delta(a, params, l, 'in_proj.x', ad.scale)
                if 'in_proj.z' in ad.targets:
                    z = z + lora_delta(a, params, l, 'in_proj.z', ad.scale)
                conv[l] = torch.cat([conv[l][:, :, 1:], x[:, :, None]], 2)
                xc = (conv[l] * P['conv_w']).sum(-1)
                if P['conv_b'] is not None:
                    xc = xc + P['conv_b']
                u = F.silu(xc)
                dbc = lora_linear(u, P['x_w'], None, params, ad, l, 'x_proj')
                dl, Bm, Cm = dbc[..., :R], dbc[..., R:R + N], dbc[..., R + N:]
                dt = F.softplus(lora_linear(dl, P['dt_w'], P['dt_b'], params, ad, l, 'dt_proj'), beta=1.0, threshold=20.0)
                A = -torch.exp(P['A_log'])
                ssm[l] = torch.exp(dt[:, :, None] * A) * ssm[l] + dt[:, :, None] * Bm[:, None, :] * u[:, :, None]
                y = (ssm[l] * Cm[:, None, :]).sum(-1) + P['D'] * u
                if lim:
                    if i == 0:
                        U[l][:, j] = hand if lim['cross_layer'] == 'first' else 0.0
                    Av = lim['tau'] * U[l][:, j] + z
                    S = (Av > lim['v_th']).to(DT)
                    U[l][:, j] = Av * (1 - S)
                    g = U[l][:, j].clone() if lim['output'] == 'post_reset' else Av
                    hand = U[l][:, j].clone()
                else:
                    g = z
                h = h + lora_linear(y * F.silu(g), P['out_w'], P['out_b'], params, ad, l, 'out_proj')
            out.append(rmsnorm(h, m.norm_f, m.eps) @ m.head.t())
    return torch.stack(out, 1)


# ---------------------------------------------------------------------------------------------
# Section 4: loss, gradients, AdamW, greedy, log-likelihood.

def ce_loss(logits, labels):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


def loss_and_grads(m, ad, params, ids, labels):
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    logits, _, _ = forward(m, ad, leaves, ids)
    loss = ce_loss(logits, labels)
    loss.backward()
    return loss.detach(), {k: v.grad.detach() for k, v in leaves.items()}


def adamw_run(m, ad, params, ids, labels, opt):
    """Returns (losses before each step [steps], final adapter tensors)."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    optim = torch.optim.AdamW(list(leaves.values()), lr=opt['lr'], betas=tuple(opt.get('betas', (0.9, 0.999))),
                              eps=opt.get('eps', 1e-8), weight_decay=opt.get('weight_decay', 0.01))
    losses = []
    for _ in range(int(opt['steps'])):
        optim.zero_grad()
        logits, _, _ = forward(m, ad, leaves, ids)
        loss = ce_loss(logits, labels)
        losses.append(loss.item())
        loss.backward()
        if opt.get('clip'):
            torch.nn.utils.clip_grad_norm_(list(leaves.values()), opt['clip'])
        optim.step()
    return torch.tensor(losses), {k: v.detach().clone() for k, v in leaves.items()}


def greedy(m, ad, params, ids, prompt_len, n_new):
    """Every new token from a full forward of the sequence so far (exact for non-causal LIM too)."""
    seq = ids[:, :prompt_len]
    new = []
    with torch.no_grad():
        for _ in range(n_new):
            logits, _, _ = forward(m, ad, params, seq)
            nxt = logits[:, -1].argmax(-1)
            new.append(nxt)
            seq = torch.cat([seq, nxt[:, None]], 1)
    return torch.stack(new, 1)


def loglik_after_prompt(logits, ids, prompt_len):
    """sum over t >= prompt_len of log softmax(logits[t-1])[ids[t]], from one full forward of ids."""
    lp = F.log_softmax(logits, -1)
    tgt = ids[:, prompt_len:]
    return lp[:, prompt_len - 1:-1].gather(-1, tgt[..., None])[..., 0].sum(-1)


# ---------------------------------------------------------------------------------------------
# One case: everything expected.safetensors holds.

def compute_case(case_dir, greedy_tokens=None):
    m = load_model(case_dir)
    ad, params = load_adapter(case_dir, m)
    case = json.load(open(os.path.join(case_dir, 'case.json')))
    ids = torch.tensor(case['ids'], dtype=torch.long)
    labels = torch.tensor(case['labels'], dtype=torch.long)
    P = int(case['greedy_prompt_len'])
    out = {}
    with torch.no_grad():
        logits, hidden, lim_vs = forward(m, ad, params, ids)
    out['logits'] = logits
    out['loss'] = ce_loss(logits, labels).reshape(1)
    for l, h in enumerate(hidden):
        out[f'hidden.{l}'] = h
    for l, v in enumerate(lim_vs):
        out[f'lim_v.{l}'] = v
    if params:
        _, grads = loss_and_grads(m, ad, params, ids, labels)
        for k in ad.names:
            out['grad.' + k] = grads[k]
        if case.get('adamw'):
            losses, final = adamw_run(m, ad, params, ids, labels, case['adamw'])
            out['adamw.losses'] = losses
            for k in ad.names:
                out['adamw.final.' + k] = final[k]
    if greedy_tokens:
        out['greedy'] = greedy(m, ad, params, ids, P, greedy_tokens).to(DT)
    out['loglik_after_prompt'] = loglik_after_prompt(logits, ids, P)
    info = {'model': m, 'adapter': ad, 'params': params, 'ids': ids, 'case': case}
    return out, info


KIND_ORDER = ['logits', 'loss', 'hidden.', 'lim_v.', 'grad.', 'adamw.losses', 'adamw.final.',
              'loglik_after_prompt', 'greedy']


def kind_of(name):
    for k in KIND_ORDER:
        if name == k or (k.endswith('.') and name.startswith(k)):
            return k
    return None


def tolerance_ok(kind, diff, bmax, rel):
    if kind == 'greedy':
        return diff == 0.0
    if kind in ('grad.',):
        return diff <= rel['grad'] * bmax
    return diff <= rel['value'] * max(1.0, bmax)


def short(name):
    return name.replace('base_model.model.backbone.layers.', 'L').replace('.weight', '')


def check(case_dir, verbose=False):
    exp_path = os.path.join(case_dir, 'expected.safetensors')
    expected = read_safetensors(exp_path)
    g = expected.get('greedy')
    out, info = compute_case(case_dir, greedy_tokens=g.shape[1] if g is not None else None)
    files = [('expected.safetensors', expected, {'value': 1e-6, 'grad': 1e-5})]
    f64 = os.path.join(case_dir, 'expected_f64.safetensors')
    if os.path.exists(f64):
        files.append(('expected_f64.safetensors', read_safetensors(f64), {'value': 1e-9, 'grad': 1e-9}))
    print(f'== {case_dir}')
    ok = True
    for fname, exp, rel in files:
        worst = {}
        missing = sorted(set(out) - set(exp)) if fname == 'expected.safetensors' else []
        for name in sorted(exp, key=lambda n: (KIND_ORDER.index(kind_of(n)) if kind_of(n) else 99, n)):
            kind = kind_of(name)
            if kind is None:
                continue  # hf_* cross-check tensors: see below
            if name not in out:
                print(f'  FAIL {fname}:{name}: not produced by the reference')
                ok = False
                continue
            a = out[name].numpy().astype(np.float64)
            b = exp[name].astype(np.float64)
            if a.shape != b.shape:
                print(f'  FAIL {fname}:{name}: shape {a.shape} vs {b.shape}')
                ok = False
                continue
            diff = float(np.abs(a - b).max()) if a.size else 0.0
            bmax = float(np.abs(b).max()) if b.size else 0.0
            good = tolerance_ok(kind, diff, bmax, rel)
            ok &= good
            relfig = diff / (bmax if kind == 'grad.' else max(1.0, bmax)) if kind != 'greedy' else diff
            if verbose or not good or not kind.endswith('.'):
                print(f'  {"ok  " if good else "FAIL"} {fname[:-12]:14s} {short(name):44s} max|a-b| {diff:.3e}  '
                      f'max|b| {bmax:.3e}  rel {relfig:.2e}')
            w = worst.get(kind)
            if w is None or relfig > w[0]:
                worst[kind] = (relfig, name, diff, bmax, good)
        for kind in KIND_ORDER:
            if kind in worst and kind.endswith('.'):
                relfig, name, diff, bmax, good = worst[kind]
                print(f'  {"ok  " if good else "FAIL"} {fname[:-12]:14s} worst {kind + "*":15s} {short(name):30s}'
                      f' max|a-b| {diff:.3e}  max|b| {bmax:.3e}  rel {relfig:.2e}')
        for name in missing:
            print(f'  FAIL {fname}:{name}: produced by the reference but absent from the file')
            ok = False

    # Informational cross-checks against figures recorded in case.json (never fail the run).
    m, ad, params, ids, case = info['model'], info['adapter'], info['params'], info['ids'], info['case']
    if 'hf_logits_no_lim' in expected:
        # transformers' slow path reads dt_proj.weight directly, so a PEFT LoRA on dt_proj has no effect there.
        with torch.no_grad():
            ref, _, _ = forward(m, ad, params, ids, use_lim=False, skip_targets=('dt_proj',))
            full, _, _ = forward(m, ad, params, ids, use_lim=False)
        b = expected['hf_logits_no_lim'].astype(np.float64)
        scale = max(1.0, float(np.abs(b).max()))
        d = float(np.abs(ref.numpy() - b).max())
        d_full = float(np.abs(full.numpy() - b).max())
        print(f'  info hf_logits_no_lim (HF fp32) vs ref no-LIM: rel {d_full / scale:.2e} with every LoRA target'
              f' (case.json hf_fp32_vs_ref_f64_rel_maxdiff {case.get("hf_fp32_vs_ref_f64_rel_maxdiff"):.2e});'
              f' rel {d / scale:.2e} with dt_proj LoRA dropped as transformers does')
    if 'lim_zero_fraction' in case and ad.lim:
        fr = [float((out[f'lim_v.{l}'] == 0).to(DT).mean()) for l in range(m.n_layer)]
        same = all(abs(x - y) < 1e-12 for x, y in zip(fr, case['lim_zero_fraction']))
        print(f'  info lim_zero_fraction (share of lim_v exactly 0) {[round(x, 6) for x in fr]}'
              f' vs case.json {[round(x, 6) for x in case["lim_zero_fraction"]]}: {"same" if same else "DIFFERENT"}')
    causal = ad.lim is None or (ad.lim.get('chunk_size') is not None and ad.lim['cross_layer'] in ('first', 'none'))
    if causal:
        step = decode_stepwise(m, ad, params, ids)
        d = float((step - out['logits']).abs().max())
        print(f'  info token-by-token recurrent decode vs full forward (float64): max|a-b| {d:.3e}')
        ok &= d <= 1e-10
    print(f'  {"PASS" if ok else "FAIL"} {case_dir}')
    return ok


def write(case_dir, out_path=None, greedy_tokens=None, force=False):
    out_path = out_path or os.path.join(case_dir, 'expected.safetensors')
    f64_path = out_path[:-len('.safetensors')] + '_f64.safetensors' if out_path.endswith('.safetensors') else out_path + '_f64'
    if greedy_tokens is None:
        case = json.load(open(os.path.join(case_dir, 'case.json')))
        greedy_tokens = case.get('greedy_tokens', 8)
    for p in (out_path, f64_path):
        if os.path.exists(p) and not force:
            sys.exit(f'{p} exists; pass --force to overwrite it (its hf_* cross-check tensors would be lost)')
    out, info = compute_case(case_dir, greedy_tokens=greedy_tokens)
    write_safetensors(out_path, {k: v.numpy().astype(np.float32) for k, v in out.items()})
    write_safetensors(f64_path, {k: out[k].numpy() for k in ('logits', 'loss')})
    ad = info['adapter']
    print(f'wrote {out_path} ({len(out)} tensors) and {f64_path}; greedy {greedy_tokens} tokens')
    if ad.lim:
        fr = [float((out[f'lim_v.{l}'] == 0).to(DT).mean()) for l in range(info['model'].n_layer)]
        print(f'lim_zero_fraction (for case.json): {fr}')
    print('not written: hf_* tensors (they come from HF transformers, not from this reference)')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = ap.add_subparsers(dest='cmd', required=True)
    c = sub.add_parser('check', help='regenerate and compare with the committed expected files')
    c.add_argument('dirs', nargs='+')
    c.add_argument('-v', '--verbose', action='store_true', help='print every tensor, not only the worst per kind')
    w = sub.add_parser('write', help='write a fresh expected.safetensors (+ _f64) for a case folder')
    w.add_argument('dir')
    w.add_argument('--out', help='output path (default DIR/expected.safetensors)')
    w.add_argument('--greedy-tokens', type=int, help='new tokens for greedy (default case.json greedy_tokens or 8)')
    w.add_argument('--force', action='store_true', help='overwrite existing files')
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.cmd == 'check':
        results = [check(d, args.verbose) for d in args.dirs]
        sys.exit(0 if all(results) else 1)
    write(args.dir, args.out, args.greedy_tokens, args.force)


if __name__ == '__main__':
    main()
