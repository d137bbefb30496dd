"""Gemma-2 text encoder benchmark: SanaEdge (per storage type) against PyTorch in the same run.

    ${PYTHON:-.venv-ref/bin/python} tools/bench_gemma.py [--layers 2] [--valid 230] [--length 512]

Builds a random-weight checkpoint with the released Gemma-2-2B configuration (hidden 2304, 8/4 heads of 256,
intermediate 9216, 256k vocabulary) but only --layers decoder layers (time and per-layer memory scale with the layer
count; the full embedding is kept so its row reads are real), in bf16 under $TMPDIR. Then encodes one prompt: `valid`
real tokens right-padded to `length` (Sana pads the instruction + prompt to n_instruction + 298).
PyTorch (transformers Gemma2Model, eager, float32 and bfloat16) runs the padded sequence as SanaPipeline does;
SanaEdge runs valid tokens only (its default) and, for a like-for-like figure, all positions (f32 only).
Each configuration runs in its own process so peak RSS (VmHWM) is per configuration.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def make_checkpoint(path, layers):
    import torch
    from safetensors.torch import save_file
    from transformers import Gemma2Config

    cfg = Gemma2Config(num_hidden_layers=layers, attn_implementation="eager")
    cfg.save_pretrained(path)
    g = torch.Generator().manual_seed(0)
    h, qw, kvw, inter = cfg.hidden_size, cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim, cfg.intermediate_size
    state = {"embed_tokens.weight": (torch.randn(cfg.vocab_size, h, generator=g) * 0.02).bfloat16(),
             "norm.weight": (torch.randn(h, generator=g) * 0.1).bfloat16()}
    for i in range(layers):
        p = f"layers.{i}."
        for name, shape in [("self_attn.q_proj", (qw, h)), ("self_attn.k_proj", (kvw, h)), ("self_attn.v_proj", (kvw, h)),
                            ("self_attn.o_proj", (h, qw)), ("mlp.gate_proj", (inter, h)), ("mlp.up_proj", (inter, h)),
                            ("mlp.down_proj", (h, inter))]:
            state[p + name + ".weight"] = (torch.randn(*shape, generator=g) / shape[1] ** 0.5).bfloat16()
        for n in ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"]:
            state[p + n + ".weight"] = (torch.randn(h, generator=g) * 0.1).bfloat16()
    save_file(state, os.path.join(path, "model.safetensors"))


def torch_run(path, dtype, valid, length):
    import torch
    from transformers import Gemma2Model

    torch.set_num_threads(os.cpu_count())
    model = Gemma2Model.from_pretrained(path, torch_dtype=getattr(torch, dtype), attn_implementation="eager").eval()
    ids = torch.zeros(1, length, dtype=torch.long)
    ids[0, 0] = 2
    for t in range(1, valid):
        ids[0, t] = 1000 + (t * 7919) % 200_000
    mask = (torch.arange(length) < valid).long()[None]
    with torch.no_grad():
        t0 = time.time()
        model(input_ids=ids, attention_mask=mask)
        seconds = time.time() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("BENCH " + json.dumps({"impl": "torch", "type": dtype, "padded": True, "seconds": seconds, "peak_mib": peak}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--valid", type=int, default=230)
    ap.add_argument("--length", type=int, default=512)
    ap.add_argument("--torch-child", nargs=2)
    args = ap.parse_args()
    if args.torch_child:
        torch_run(args.torch_child[0], args.torch_child[1], args.valid, args.length)
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        make_checkpoint(tmp, args.layers)
        runs = [[sys.executable, __file__, "--valid", str(args.valid), "--length", str(args.length), "--torch-child", tmp, d]
                for d in ("float32", "bfloat16")]
        for cmd in runs:
            out = subprocess.run(cmd, capture_output=True, text=True).stdout
            results += [json.loads(l[6:]) for l in out.splitlines() if l.startswith("BENCH ")]
        for typ, padded in [("f32", "1"), ("f32", "0"), ("bf16", "0"), ("int8", "0"), ("int4", "0")]:
            env = dict(os.environ, SANA_BENCH_GEMMA_DIR=tmp, SANA_BENCH_TYPE=typ, SANA_BENCH_VALID=str(args.valid),
                       SANA_BENCH_LENGTH=str(args.length), SANA_BENCH_PADDED=padded)
            out = subprocess.run(["swift", "test", "-c", "release", "-Xswiftc", "-enable-testing", "--skip-build",
                                  "--filter", "GemmaBenchmarkTests"], cwd=ROOT, env=env, capture_output=True, text=True).stdout
            results += [json.loads(l[6:]) for l in out.splitlines() if l.startswith("BENCH ")]
    base = next(r for r in results if r["impl"] == "torch" and r["type"] == "float32")
    print(f"layers={args.layers} valid={args.valid} length={args.length} cores={os.cpu_count()}")
    print("| implementation | weights | positions | seconds | vs torch f32 | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for r in results:
        pos = f"all {args.length}" if r["padded"] else f"valid {args.valid}"
        print(f"| {r['impl']} | {r['type']} | {pos} | {r['seconds']:.2f} | {base['seconds'] / r['seconds']:.2f}x | {r['peak_mib']:.0f} |")


if __name__ == "__main__":
    main()
