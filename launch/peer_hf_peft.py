#!/usr/bin/env python3
"""Peer benchmark: one LoRA training step of Hugging Face `transformers` + `peft`, on the model shape and
batch of a DeltaShard run config, with DeltaShard's precision recipe, so `deltashard bench step` has a
reference on the same GPU.

    python3 launch/peer_hf_peft.py --config configs/bench/llama-1b-lora.yaml [--steps 10] [--warmup 3]
        [--compile] [--dtype bf16] [--device cuda|cpu] [--override model.n_layer=2 ...] [--json]

The model is built from a config object (LlamaConfig for rmsnorm + swiglu + rope, GPT2Config for
layernorm + gelu + learned positions), never downloaded; weights are random. Recipe (as DeltaShard's):
frozen base weights in bf16, LoRA A/B in fp32, forward under autocast(bf16), cross entropy over the
shifted labels (HF shifts `labels=input_ids` itself), fused AdamW over the LoRA parameters, gradient
clipping when train.grad_clip > 0. Data: random token ids, a fresh batch each step from a seeded
generator. Warm-up steps are untimed (with --compile they include compilation: `compile_s`); timed
steps use CUDA events with a synchronize at the end of each step (time.perf_counter on the CPU).

--json prints one line: {"bf16": {"lora": {"step_ms": ..., "tokens_per_s": ..., ...}}}.
"""
import argparse
import contextlib
import inspect
import json
import math
import statistics
import sys
import time

H200_BF16_DENSE_FLOPS = 989e12  # NVIDIA H200 SXM datasheet, dense bf16 (no sparsity)

LLAMA_TARGETS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj",
                 "gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
# GPT-2 fuses q, k and v into one module (attn.c_attn): any of them puts one LoRA on the fused output.
GPT2_TARGETS = {"q": "c_attn", "k": "c_attn", "v": "c_attn", "o": "attn.c_proj",
                "up": "c_fc", "down": "mlp.c_proj"}


def fail(msg):
    print(f"peer_hf_peft: error: {msg}", file=sys.stderr)
    sys.exit(1)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, help="DeltaShard run config (YAML)")
    p.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--compile", action="store_true", help="wrap the PEFT model in torch.compile")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"], help="base weight / autocast dtype")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--override", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="change one config value (YAML syntax), e.g. model.n_layer=2; repeatable")
    p.add_argument("--json", action="store_true", help="print one JSON line")
    a = p.parse_args()
    if a.steps < 1 or a.warmup < 0:
        fail("--steps must be >= 1 and --warmup >= 0")
    return a


def load_config(path, overrides):
    try:
        import yaml
    except ImportError:
        fail("PyYAML is missing (python3 -m pip show pyyaml)")
    try:
        with open(path) as f:
            cfg = yaml.safe_load(f) or {}
    except OSError as e:
        fail(f"{path}: {e.strerror}")
    except yaml.YAMLError as e:
        fail(f"{path}: not valid YAML: {e}")
    if not isinstance(cfg, dict):
        fail(f"{path}: expected a mapping at the top level")
    for ov in overrides:
        key, sep, value = ov.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot:
            fail(f"--override {ov}: expected SECTION.KEY=VALUE")
        cfg.setdefault(section, {})
        if not isinstance(cfg[section], dict):
            fail(f"--override {ov}: {section} is not a section")
        cfg[section][name] = yaml.safe_load(value)
    return cfg


def num(section, key, default, kind, cfg, path):
    """A scalar from cfg[section][key] converted with kind (int/float/bool/str), or default."""
    sec = cfg.get(section) or {}
    if key not in sec or sec[key] is None:
        return default
    v = sec[key]
    try:
        if kind is bool:
            if isinstance(v, bool):
                return v
            raise ValueError
        if kind is float:  # PyYAML reads 1e-5 (no dot) as a string; accept it
            return float(v)
        if kind is int:
            if isinstance(v, bool) or float(v) != int(float(v)):
                raise ValueError
            return int(float(v))
        return kind(v)
    except (TypeError, ValueError):
        fail(f"{path}: {section}.{key}: expected {kind.__name__}, got {v!r}")


def model_spec(cfg, path):
    g = lambda key, default, kind: num("model", key, default, kind, cfg, path)  # noqa: E731
    if (cfg.get("model") or {}).get("path"):
        fail(f"{path}: model.path is set; this benchmark builds the model from the model section's shape")
    m = dict(
        vocab_size=g("vocab_size", 50257, int), n_layer=g("n_layer", 12, int), n_head=g("n_head", 12, int),
        n_kv_head=g("n_kv_head", 0, int), d_model=g("d_model", 768, int), d_ff=g("d_ff", 0, int),
        max_seq_len=g("max_seq_len", 1024, int), tie_embeddings=g("tie_embeddings", None, bool),
        norm=g("norm", "layernorm", str), activation=g("activation", "gelu", str),
        positions=g("positions", "learned", str), bias=g("bias", None, bool),
        rope_theta=g("rope_theta", 10000.0, float), norm_eps=g("norm_eps", 1e-5, float),
        init_std=g("init_std", 0.02, float))
    if m["n_kv_head"] == 0:
        m["n_kv_head"] = m["n_head"]
    if m["d_ff"] == 0:
        m["d_ff"] = 4 * m["d_model"]
    if (m["norm"], m["activation"], m["positions"]) == ("rmsnorm", "swiglu", "rope"):
        m["family"] = "llama"
        m["tie_embeddings"] = False if m["tie_embeddings"] is None else m["tie_embeddings"]
        m["bias"] = False if m["bias"] is None else m["bias"]
    elif (m["norm"], m["activation"], m["positions"]) == ("layernorm", "gelu", "learned"):
        m["family"] = "gpt2"
        m["tie_embeddings"] = True if m["tie_embeddings"] is None else m["tie_embeddings"]
        if m["bias"] is False:
            fail(f"{path}: model.bias false: GPT-2's modules always have biases")
        if m["n_kv_head"] != m["n_head"]:
            fail(f"{path}: model.n_kv_head {m['n_kv_head']}: GPT-2 has no grouped-query attention")
    else:
        fail(f"{path}: no Hugging Face family for norm {m['norm']}, activation {m['activation']}, "
             f"positions {m['positions']} (llama: rmsnorm/swiglu/rope; gpt2: layernorm/gelu/learned)")
    return m


def peft_spec(cfg, path):
    sec = cfg.get("peft") or {}
    method = sec.get("method", "lora")
    if method != "lora":
        fail(f"{path}: peft.method {method}: this peer runs LoRA only")
    targets = sec.get("targets", ["q", "v"])
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, list) or not targets:
        fail(f"{path}: peft.targets: expected a non-empty list")
    return dict(r=num("peft", "r", 8, int, cfg, path), alpha=num("peft", "alpha", 16.0, float, cfg, path),
                dropout=num("peft", "dropout", 0.0, float, cfg, path), targets=[str(t) for t in targets])


def train_spec(cfg, path):
    g = lambda key, default, kind: num("train", key, default, kind, cfg, path)  # noqa: E731
    return dict(micro_batch=g("micro_batch", 8, int), seq_len=g("seq_len", 1024, int), lr=g("lr", 1e-4, float),
                weight_decay=g("weight_decay", 0.0, float), beta1=g("beta1", 0.9, float),
                beta2=g("beta2", 0.999, float), eps=g("eps", 1e-8, float), grad_clip=g("grad_clip", 0.0, float))


def accepts(cls, name):
    """Whether a config class takes `name` as a named argument / dataclass field (transformers 4 vs 5)."""
    fields = getattr(cls, "__dataclass_fields__", None)
    if fields and name in fields:
        return True
    try:
        return name in inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return False


def hf_config(m):
    import transformers
    if m["family"] == "llama":
        kw = dict(vocab_size=m["vocab_size"], hidden_size=m["d_model"], intermediate_size=m["d_ff"],
                  num_hidden_layers=m["n_layer"], num_attention_heads=m["n_head"],
                  num_key_value_heads=m["n_kv_head"], max_position_embeddings=m["max_seq_len"],
                  rms_norm_eps=m["norm_eps"], tie_word_embeddings=m["tie_embeddings"], hidden_act="silu",
                  attention_bias=m["bias"], mlp_bias=m["bias"], attention_dropout=0.0,
                  initializer_range=m["init_std"], use_cache=False)
        # transformers 5 keeps RoPE settings in rope_parameters (4.x: rope_theta; 5 still maps rope_theta).
        if accepts(transformers.LlamaConfig, "rope_parameters"):
            kw["rope_parameters"] = {"rope_type": "default", "rope_theta": m["rope_theta"]}
        else:
            kw["rope_theta"] = m["rope_theta"]
        c = transformers.LlamaConfig(**kw)
        rp = getattr(c, "rope_parameters", None)
        theta = rp.get("rope_theta") if isinstance(rp, dict) else getattr(c, "rope_theta", None)
        if theta is None or abs(float(theta) - m["rope_theta"]) > 1e-6 * m["rope_theta"]:
            fail(f"LlamaConfig did not take rope_theta {m['rope_theta']} (it holds {theta})")
    else:
        c = transformers.GPT2Config(vocab_size=m["vocab_size"], n_positions=m["max_seq_len"], n_embd=m["d_model"],
                                    n_layer=m["n_layer"], n_head=m["n_head"], n_inner=m["d_ff"],
                                    activation_function="gelu_new", layer_norm_epsilon=m["norm_eps"],
                                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                    initializer_range=m["init_std"], tie_word_embeddings=m["tie_embeddings"],
                                    use_cache=False)
    return c


def build_model(cfg_hf, torch_dtype, device):
    import torch
    from transformers import AutoModelForCausalLM
    # Built directly on the device in the base dtype: no fp32 copy on the host. transformers 5 names the
    # argument dtype= (torch_dtype= still accepted, with a warning); 4.x before 4.56 knows torch_dtype= only.
    # (torch.device is a context manager from torch 2.0 on; older ones build on the host and move.)
    ctx = torch.device(device) if hasattr(torch.device, "__enter__") else contextlib.nullcontext()
    with ctx:
        try:
            model = AutoModelForCausalLM.from_config(cfg_hf, dtype=torch_dtype, attn_implementation="sdpa")
        except TypeError:
            model = AutoModelForCausalLM.from_config(cfg_hf, torch_dtype=torch_dtype, attn_implementation="sdpa")
    p = next(model.parameters())
    if p.device.type != device or p.dtype != torch_dtype:
        model = model.to(device=device, dtype=torch_dtype)
    return model


def param_counts(model, family):
    """total, and non-embedding N: total less the token embedding, the LM head when untied, and GPT-2's
    learned position embedding. Counted on the base model, before LoRA (LoRA adds r*(in+out) per target)."""
    seen, total = set(), 0
    for p in model.parameters():  # parameters() yields a tied weight once
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    emb = model.get_input_embeddings().weight
    excluded = {id(emb): emb.numel()}
    head = model.get_output_embeddings()
    if head is not None and id(head.weight) not in excluded:
        excluded[id(head.weight)] = head.weight.numel()
    if family == "gpt2":
        wpe = model.transformer.wpe.weight
        excluded[id(wpe)] = wpe.numel()
    return total, total - sum(excluded.values())


def lora_model(model, m, ps):
    import torch
    from peft import LoraConfig, get_peft_model
    table = LLAMA_TARGETS if m["family"] == "llama" else GPT2_TARGETS
    names = []
    for t in ps["targets"]:
        if t not in table:
            fail(f"peft.targets: '{t}' has no {m['family']} module (known: {', '.join(table)})")
        if table[t] not in names:
            names.append(table[t])
    # GPT-2's modules are transformers' Conv1D (weight stored in x out): PEFT needs fan_in_fan_out=True.
    fan_in_fan_out = m["family"] == "gpt2" and type(model.transformer.h[0].attn.c_attn).__name__ == "Conv1D"
    lc = LoraConfig(r=ps["r"], lora_alpha=ps["alpha"], lora_dropout=ps["dropout"], target_modules=names,
                    fan_in_fan_out=fan_in_fan_out, bias="none", task_type="CAUSAL_LM")
    pm = get_peft_model(model, lc)
    trainable = [p for p in pm.parameters() if p.requires_grad]
    for p in trainable:  # LoRA A/B in fp32 (PEFT already upcasts bf16 adapters; make it certain)
        if p.dtype != torch.float32:
            p.data = p.data.float()
    if not trainable:
        fail("PEFT made no trainable parameter")
    return pm, trainable


def main():
    a = parse_args()
    cfg = load_config(a.config, a.override)
    m, ps, ts = model_spec(cfg, a.config), peft_spec(cfg, a.config), train_spec(cfg, a.config)
    if ts["seq_len"] > m["max_seq_len"]:
        fail(f"{a.config}: train.seq_len {ts['seq_len']} exceeds model.max_seq_len {m['max_seq_len']}")

    try:
        import torch
        import transformers
        import peft
    except ImportError as e:
        fail(f"{e.name} is missing: this peer needs torch, transformers and peft")

    dev = a.device
    if dev == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: no CUDA device (use --device cpu for a smoke test)")
    torch.manual_seed(a.seed)
    base_dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[a.dtype]
    amp = a.dtype != "fp32"

    t0 = time.perf_counter()
    model = build_model(hf_config(m), base_dtype, dev)
    total_params, n_nonemb = param_counts(model, m["family"])
    model, trainable = lora_model(model, m, ps)
    model.train()
    trainable_params = sum(p.numel() for p in trainable)
    build_s = time.perf_counter() - t0

    opt_kw = dict(lr=ts["lr"], betas=(ts["beta1"], ts["beta2"]), eps=ts["eps"], weight_decay=ts["weight_decay"])
    opt = torch.optim.AdamW(trainable, fused=True, **opt_kw) if dev == "cuda" else torch.optim.AdamW(trainable, **opt_kw)
    step_model = torch.compile(model) if a.compile else model

    gen = torch.Generator(device=dev)
    gen.manual_seed(a.seed)
    mb, sl, vocab = ts["micro_batch"], ts["seq_len"], m["vocab_size"]

    def autocast():
        return torch.autocast(device_type=dev, dtype=base_dtype) if amp else contextlib.nullcontext()

    def step(ids):
        with autocast():
            loss = step_model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        if ts["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(trainable, ts["grad_clip"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    # Warm-up (untimed; with --compile this is where compilation happens).
    t0 = time.perf_counter()
    loss = None
    for _ in range(a.warmup):
        loss = step(torch.randint(vocab, (mb, sl), device=dev, generator=gen))
    if dev == "cuda":
        torch.cuda.synchronize()
    warmup_s = time.perf_counter() - t0

    times_ms = []
    for _ in range(a.steps):
        ids = torch.randint(vocab, (mb, sl), device=dev, generator=gen)
        if dev == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            loss = step(ids)
            end.record()
            torch.cuda.synchronize()
            times_ms.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            loss = step(ids)
            times_ms.append((time.perf_counter() - t) * 1000.0)
    final_loss = float(loss.detach().float())
    if not math.isfinite(final_loss):
        fail(f"the loss is {final_loss}")

    step_ms = statistics.median(times_ms)
    tokens_per_s = mb * sl / (step_ms / 1000.0)
    # Peak over the whole run, weights included (not reset after the model was built).
    peak_gib = torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else None
    res = {
        "step_ms": round(step_ms, 3),
        "step_ms_min": round(min(times_ms), 3),
        "step_ms_max": round(max(times_ms), 3),
        "tokens_per_s": round(tokens_per_s, 1),
        "peak_gpu_mem_gib": round(peak_gib, 3) if peak_gib is not None else None,
        "mfu_6n": round(6 * n_nonemb * tokens_per_s / H200_BF16_DENSE_FLOPS, 4),
        "mfu_4n": round(4 * n_nonemb * tokens_per_s / H200_BF16_DENSE_FLOPS, 4),
        "trainable_params": trainable_params,
        "total_params": total_params,
        "non_embedding_params": n_nonemb,
        "loss": round(final_loss, 4),
        "steps": a.steps,
        "warmup": a.warmup,
        "compile_s": round(warmup_s, 2),
        "build_s": round(build_s, 2),
        "micro_batch": mb,
        "seq_len": sl,
        "family": m["family"],
        "lora_modules": sorted({n.rsplit(".", 1)[-1] for n, mod in model.named_modules() if hasattr(mod, "lora_A")}),
        "grad_clip": ts["grad_clip"],
        "impl": "hf_peft_compiled" if a.compile else "hf_peft",
        "device": dev,
        "gpu": torch.cuda.get_device_name() if dev == "cuda" else None,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__},
    }
    if a.json:
        print(json.dumps({a.dtype: {"lora": res}}, separators=(",", ":")))
        return
    print(f"# {res['impl']}: {a.config}, {m['family']}, {m['n_layer']} layers, d_model {m['d_model']}, "
          f"micro_batch {mb} x seq {sl}, {a.dtype}, {dev} {res['gpu'] or ''}")
    print(f"# torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
    rows = [("step_ms (median)", f"{step_ms:.2f}  (min {min(times_ms):.2f}, max {max(times_ms):.2f})"),
            ("tokens/s", f"{tokens_per_s:,.0f}"),
            ("peak GPU memory", f"{peak_gib:.2f} GiB" if peak_gib is not None else "-"),
            ("MFU 6N / 4N", f"{res['mfu_6n']:.3f} / {res['mfu_4n']:.3f}  (N = {n_nonemb:,}, peak 989 TFLOP/s)"),
            ("trainable params", f"{trainable_params:,}  ({', '.join(res['lora_modules'])})"),
            ("total params", f"{total_params:,}"),
            ("final loss", f"{final_loss:.4f}"),
            ("warm-up", f"{a.warmup} steps, {warmup_s:.2f} s" + (" (compilation included)" if a.compile else "")),
            ("timed steps", str(a.steps))]
    for k, v in rows:
        print(f"{k:<18} {v}")


if __name__ == "__main__":
    main()
