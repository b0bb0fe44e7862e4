#!/usr/bin/env python3
"""Peer benchmark for issue 14: a LoRA data-parallel step in plain PyTorch (DDP over gloo, no peft), on the
model, batch and optimizer settings of a DeltaShard run config, mirroring what DeltaShard computes, so
`deltashard bench step` on the CPU has a reference with the same work per step (launch/bench_ddp_peer.sh).

    mpirun -np 2 /usr/bin/python3 launch/peer_ddp_lora.py [--config configs/bench/cpu/ddp-lora.yaml]
        [--dtype fp32|bf16] [--steps 20] [--warmup 3] [--port 29611] [--threads N] [--foreach]

Rank and world come from Open MPI's OMPI_COMM_WORLD_RANK / OMPI_COMM_WORLD_SIZE (or RANK / WORLD_SIZE; one
process without either). Rank 0 prints one JSON line, shaped like `deltashard bench step --json`:
{"bf16": {"lora": {"step_ms": ..., "step_ms_mean": ..., "tokens_per_s": ..., ...}}}; each statistic of the
timed steps (median, mean, min, max) is taken per rank, then the maximum over ranks, as DeltaShard does.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

# What configs/bench/cpu/ddp-lora.yaml holds, for a python without PyYAML.
DEFAULTS = {
    "model": dict(vocab_size=256, n_layer=4, n_head=4, n_kv_head=0, d_model=256, d_ff=1024, max_seq_len=128,
                  tie_embeddings=True, norm="layernorm", activation="gelu", positions="learned", bias=True,
                  norm_eps=1e-5, init_std=0.02),
    "peft": dict(method="lora", r=8, alpha=16.0, dropout=0.0, targets=["q", "v"], use_rslora=False),
    "train": dict(micro_batch=8, seq_len=128, lr=1e-4, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                  grad_clip=1.0, warmup_steps=0, min_lr_ratio=0.1, seed=1234, threads=1),
    "parallel": dict(bucket_mb=25.0),
}


def fail(msg):
    print(f"peer_ddp_lora: error: {msg}", file=sys.stderr)
    sys.exit(1)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/bench/cpu/ddp-lora.yaml", help="DeltaShard run config (YAML)")
    p.add_argument("--profile", default="", help="write rank 0's timed steps as a Chrome trace to this file")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="frozen base weights' type")
    p.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--port", type=int, default=int(os.environ.get("MASTER_PORT", "29611")))
    p.add_argument("--threads", type=int, default=0, help="intra-op threads per rank (default: train.threads, else 1)")
    p.add_argument("--foreach", action="store_true", help="AdamW(foreach=True): one multi-tensor update")
    a = p.parse_args()
    if a.steps < 1 or a.warmup < 0:
        fail("--steps must be >= 1 and --warmup >= 0")
    return a


def load_config(path):
    cfg = {k: dict(v) for k, v in DEFAULTS.items()}
    try:
        import yaml
    except ImportError:
        print(f"peer_ddp_lora: warning: no PyYAML; using the built-in copy of cpu-ddp-lora.yaml, not {path}",
              file=sys.stderr)
        return cfg
    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
    except OSError as e:
        fail(f"{path}: {e.strerror}")
    for section, values in doc.items():
        if section in cfg and isinstance(values, dict):
            cfg[section].update({k: v for k, v in values.items() if v is not None})
    m, ps = cfg["model"], cfg["peft"]
    if m.get("path"):
        fail(f"{path}: model.path is set; this peer builds the model from the model section's shape")
    if (m["norm"], m["activation"], m["positions"]) != ("layernorm", "gelu", "learned"):
        fail(f"{path}: this peer builds the GPT-2 family only (layernorm, gelu, learned positions)")
    if not m["tie_embeddings"] or not m["bias"]:
        fail(f"{path}: this peer builds GPT-2 with tied embeddings and biases")
    if m["n_kv_head"] not in (0, m["n_head"]):
        fail(f"{path}: model.n_kv_head: no grouped-query attention in the GPT-2 family")
    if ps["method"] != "lora":
        fail(f"{path}: peft.method {ps['method']}: this peer runs LoRA only")
    if m["d_ff"] == 0:
        m["d_ff"] = 4 * m["d_model"]
    # PyYAML reads 1e-4 (no dot) as a string.
    for sec, keys in (("train", ("lr", "beta1", "beta2", "eps", "weight_decay", "grad_clip", "min_lr_ratio")),
                      ("model", ("norm_eps", "init_std")), ("peft", ("alpha", "dropout")),
                      ("parallel", ("bucket_mb",))):
        for k in keys:
            cfg[sec][k] = float(cfg[sec][k])
    if cfg["train"]["seq_len"] > m["max_seq_len"]:
        fail(f"{path}: train.seq_len exceeds model.max_seq_len")
    return cfg


def lr_at(step, total, warmup, lr, min_ratio):
    """trainer/adamw.cpp's schedule: linear warmup, then cosine to lr * min_ratio at `total`."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    span = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / span)
    return lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def build(cfg, base_dtype):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    m, ps = cfg["model"], cfg["peft"]
    d, n_layer, n_head = m["d_model"], m["n_layer"], m["n_head"]
    hd = d // n_head

    def frozen(shape, std):
        # Drawn in fp32 then stored in the base type, as core/linear.cpp's make_param does.
        t = torch.empty(shape).normal_(0.0, std) if std > 0 else torch.zeros(shape)
        return nn.Parameter(t.to(base_dtype), requires_grad=False)

    class Linear(nn.Module):
        # core/linear.cpp: everything is cast to x's type at use, so a bf16 base keeps fp32 LoRA factors.
        def __init__(self, n_in, n_out, std):
            super().__init__()
            self.weight = frozen((n_out, n_in), std)
            self.bias = frozen((n_out,), 0.0)
            self.lora_A = None

        def add_lora(self, r, alpha, rslora):
            n_out, n_in = self.weight.shape
            bound = 1.0 / math.sqrt(n_in)  # kaiming_uniform(a=sqrt(5)), LoraInit::Kaiming
            self.lora_A = nn.Parameter(torch.empty(r, n_in).uniform_(-bound, bound))
            self.lora_B = nn.Parameter(torch.zeros(n_out, r))
            self.scale = alpha / math.sqrt(r) if rslora else alpha / r

        def forward(self, x):
            t = x.dtype
            y = F.linear(x, self.weight.to(t), self.bias.to(t))
            if self.lora_A is not None:
                y = y + self.scale * F.linear(F.linear(x, self.lora_A.to(t)), self.lora_B.to(t))
            return y

    class Norm(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(d, dtype=base_dtype), requires_grad=False)
            self.bias = nn.Parameter(torch.zeros(d, dtype=base_dtype), requires_grad=False)

        def forward(self, x):  # in fp32, back to x's type
            return F.layer_norm(x.float(), (d,), self.weight.float(), self.bias.float(), m["norm_eps"]).to(x.dtype)

    resid_std = m["init_std"] / math.sqrt(2.0 * n_layer)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k = Linear(d, d, m["init_std"]), Linear(d, d, m["init_std"])
            self.v, self.o = Linear(d, d, m["init_std"]), Linear(d, d, resid_std)

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = (lin(x).view(B, T, n_head, hd).transpose(1, 2) for lin in (self.q, self.k, self.v))
            # LibTorch 1.13 has no fused attention: DeltaShard's explicit path, softmax in fp32.
            att = q.matmul(k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
            mask = torch.ones(T, T, dtype=torch.bool).triu(1)
            att = torch.softmax(att.float().masked_fill(mask, float("-inf")), -1).to(v.dtype)
            y = att.matmul(v).transpose(1, 2).contiguous()
            return self.o(y.view(B, T, d))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.attn = Norm(), Attention()
            self.ln2 = Norm()
            self.up, self.down = Linear(d, m["d_ff"], m["init_std"]), Linear(m["d_ff"], d, resid_std)

        def forward(self, x):
            h = x + self.attn(self.ln1(x))
            return h + self.down(F.gelu(self.up(self.ln2(h)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = frozen((m["vocab_size"], d), m["init_std"])
            self.wpe = frozen((m["max_seq_len"], d), m["init_std"] / 2)
            self.blocks = nn.ModuleList(Block() for _ in range(n_layer))
            self.ln_f = Norm()

        def forward(self, idx):
            T = idx.shape[1]
            # Activations in the base's type (bf16 stays bf16 on the CPU), as TransformerImpl::forward.
            x = F.embedding(idx, self.wte) + self.wpe[:T].unsqueeze(0)
            for b in self.blocks:
                x = b(x)
            return F.linear(self.ln_f(x), self.wte)  # tied head, in the base's type

    # Same seeds and draw order as trainer/model_builder.cpp (base first, then the LoRA factors).
    torch.manual_seed(cfg["train"]["seed"])
    model = GPT()
    torch.manual_seed(cfg["train"]["seed"] ^ 0x5eed0f9e7f)
    names = {"q": "q", "k": "k", "v": "v", "o": "o", "up": "up", "down": "down"}
    for t in ps["targets"]:
        if t not in names:
            fail(f"peft.targets: '{t}' is not a GPT-2 projection (q, k, v, o, up, down)")
    for b in model.blocks:
        for t in ps["targets"]:
            lin = getattr(b.attn, t) if t in ("q", "k", "v", "o") else getattr(b, t)
            lin.add_lora(ps["r"], ps["alpha"], ps.get("use_rslora", False))
    return model


def main():
    a = parse_args()
    cfg = load_config(a.config)
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("RANK", "0")))
    world = int(os.environ.get("OMPI_COMM_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(a.port)
    # Loopback only: gloo otherwise resolves the hostname, which may name an unreachable interface.
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    try:
        import torch
        import torch.distributed as dist
        import torch.nn.functional as F
        from torch.nn.parallel import DistributedDataParallel as DDP
    except ImportError:
        fail("torch is missing: run with /usr/bin/python3 (torch 1.13 with gloo)")
    if not dist.is_gloo_available():
        fail("this torch has no gloo backend")
    threads = a.threads or cfg["train"].get("threads") or 1
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", rank=rank, world_size=world)

    ts, m = cfg["train"], cfg["model"]
    base_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[a.dtype]
    model = build(cfg, base_dtype)
    trainable = [p for p in model.parameters() if p.requires_grad]
    # Every rank draws the same base from the same seed and it never changes, so DDP need not broadcast
    # it at the start (and gloo in torch 1.13 cannot broadcast bf16): it syncs the LoRA factors only.
    DDP._set_params_and_buffers_to_ignore_for_model(
        model, [n for n, p in model.named_parameters() if not p.requires_grad])
    ddp = DDP(model, bucket_cap_mb=cfg["parallel"]["bucket_mb"])
    opt = torch.optim.AdamW(trainable, lr=ts["lr"], betas=(ts["beta1"], ts["beta2"]), eps=ts["eps"],
                            weight_decay=ts["weight_decay"], foreach=a.foreach)

    mb, sl, vocab = ts["micro_batch"], ts["seq_len"], m["vocab_size"]
    total = a.steps + a.warmup
    # A pool of random tokens as trainer.cpp's random_dataset, windows of seq_len + 1 drawn per step.
    gen = torch.Generator().manual_seed(ts["seed"])
    pool = torch.randint(vocab, (max(1 << 20, 4 * mb * world * (sl + 1)),), generator=gen)
    span = torch.arange(sl + 1)

    def step(i):
        g = torch.Generator().manual_seed(ts["seed"] * 1000003 + rank * 7919 + i * 104729)
        starts = torch.randint(pool.numel() - sl, (mb, 1), generator=g)
        w = pool[starts + span]
        x, y = w[:, :sl], w[:, 1:]
        logits = ddp(x)
        loss = F.cross_entropy(logits.reshape(-1, vocab).float(), y.reshape(-1))  # in fp32
        loss.backward()  # DDP averages the LoRA gradients over ranks here
        if ts["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(trainable, ts["grad_clip"])
        lr = lr_at(i, total, ts["warmup_steps"], ts["lr"], ts["min_lr_ratio"])
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        opt.zero_grad(set_to_none=True)
        # DeltaShard averages the step's loss over DP for its log: the same small all-reduce.
        l = loss.detach().reshape(1)
        dist.all_reduce(l)
        return float(l) / world

    loss = None
    for i in range(a.warmup):
        loss = step(i)
    times_ms = []
    # --profile: rank 0's timed steps in a Chrome trace, as `deltashard bench step --profile` writes
    # (launch/profile_summary.py reads both).
    prof = torch.autograd.profiler.profile() if a.profile and rank == 0 else None
    if prof:
        prof.__enter__()
    for i in range(a.warmup, total):
        t0 = time.perf_counter()
        loss = step(i)
        times_ms.append((time.perf_counter() - t0) * 1000.0)
    if prof:
        prof.__exit__(None, None, None)
        prof.export_chrome_trace(a.profile)
    if not math.isfinite(loss):
        fail(f"the loss is {loss}")

    # As trainer/metrics.cpp's step_times: each rank's statistic, then the maximum over ranks.
    stats = torch.tensor([statistics.median(times_ms), statistics.fmean(times_ms), min(times_ms), max(times_ms)],
                         dtype=torch.float64)
    dist.all_reduce(stats, op=dist.ReduceOp.MAX)
    step_ms, mean_ms, min_ms, max_ms = stats.tolist()
    if rank == 0:
        res = {
            "step_ms": round(step_ms, 3),
            "step_ms_mean": round(mean_ms, 3),
            "step_ms_min": round(min_ms, 3),
            "step_ms_max": round(max_ms, 3),
            "tokens_per_s": round(mb * sl * world / (step_ms / 1000.0), 1),  # global tokens, as DeltaShard
            "trainable_params": sum(p.numel() for p in trainable),
            "loss": round(loss, 4),
            "steps": a.steps,
            "warmup": a.warmup,
            "world": world,
            "threads": torch.get_num_threads(),
            "dtype": a.dtype,
            "device": "cpu",
            "impl": "torch_ddp_lora" + ("_foreach" if a.foreach else ""),
            "torch": torch.__version__,
        }
        print(json.dumps({a.dtype: {"lora": res}}, separators=(",", ":")), flush=True)
    # Every rank is done with the collectives here; exiting without destroy_process_group avoids a
    # teardown that once left one gloo rank spinning after the result was printed.
    dist.barrier()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
