#!/usr/bin/env python3
"""Gemma-2 text encoder: encoding one prompt as SanaPipeline.encode_prompt does, with full-size Gemma-2-2B on random
weights (models/configs/gemma-2-2b.json), SanaEdge (`sana bench gemma`, one process per storage type) against
PyTorch (transformers Gemma2Model built from the config with its random init, float32 and bfloat16,
torch.set_num_threads(2), one process per dtype), one process after the other in the same run.

The work is encode_prompt's with classifier-free guidance: the complex human instruction + a short prompt, right-padded
to n_instruction + max_sequence_length − 2, and the empty negative prompt padded to max_sequence_length, two encoder
forwards. Token ids are synthetic (no real Gemma tokenizer here): --instruction-tokens (<bos> included) and
--prompt-tokens set the counts. PyTorch runs every padded position, as the pipeline does; SanaEdge runs the valid
positions (its default; padded rows are never used downstream) and reports three phases: a prompt without the
prefix cache, building the instruction's cache, a prompt with it. Peak RSS: each process's ru_maxrss (wait4).

    ${PYTHON:-/work/main/.venv-ref/bin/python} tools/bench_gemma.py --types int4,int8,f32 --torch bfloat16,float32

With --bundle B --pipeline P: a fresh process's text-encoder stage on a real bundle (`sana bench gemma --bundle`: open
the bundle, parse its tokenizer, encode the prompt with the instruction and the empty negative prompt, with the prefix
cache stored in the bundle, then computing it) against diffusers' SanaPipeline.encode_prompt on P (the directory B was
converted from: same tokenizer, same weights in bf16), one process per case:

    ${PYTHON:-/work/main/.venv-ref/bin/python} tools/bench_gemma.py --torch bfloat16 \
        --bundle /work/bench-cache/bundles/sana-0.6b-512-int4-prefix.sana --pipeline /work/bench-cache/pipelines/sana-0.6b-512
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CONFIG = os.path.join(ROOT, "models", "configs", "gemma-2-2b.json")


def torch_case(dtype, instruction, prompt, msl, warmup):
    """Runs in the child: Gemma2Model from the config with transformers' random init (no download), eager attention
    (Gemma-2's only exact one: sdpa cannot soft-cap), then encode_prompt's two forwards."""
    import torch
    from transformers import Gemma2Config, Gemma2Model

    torch.set_num_threads(2)
    torch.manual_seed(0)
    dt = getattr(torch, dtype)
    cfg = Gemma2Config.from_json_file(CONFIG)
    cfg._attn_implementation = "eager"
    torch.set_default_dtype(dt)  # parameters are created in dt: no float32 copy of a bf16 model
    model = Gemma2Model(cfg).eval()
    torch.set_default_dtype(torch.float32)
    length_all = instruction + msl - 2
    valid = min(instruction + prompt, length_all)
    ids = torch.zeros(1, length_all, dtype=torch.long)
    ids[0, 0] = 2
    ids[0, 1:valid] = 1000 + (torch.arange(1, valid) * 7919) % 200_000
    mask = (torch.arange(length_all) < valid).long()[None]
    neg = torch.zeros(1, msl, dtype=torch.long)
    neg[0, 0] = 2
    neg_mask = (torch.arange(msl) < 1).long()[None]
    times = []
    with torch.no_grad():
        for _ in range(warmup + 1):
            t0, c0 = time.time(), time.process_time()
            out = model(input_ids=ids, attention_mask=mask).last_hidden_state
            model(input_ids=neg, attention_mask=neg_mask)
            times.append(time.time() - t0)
            cpu = time.process_time() - c0
    print(json.dumps({"impl": "pytorch", "weights": dtype, "threads": torch.get_num_threads(), "warmup": warmup,
                      "attn": cfg._attn_implementation, "length_all": length_all, "valid": valid,
                      "encode_s": round(times[-1], 3), "encode_cpu_s": round(cpu, 3), "first_encode_s": round(times[0], 3),
                      "peak_rss_mib": benchlib.status_kib("VmHWM") >> 10, "max_abs": float(out.float().abs().max())}))


def pipeline_case(pipeline, dtype, prompt, msl, warmup):
    """Runs in the child: diffusers SanaPipeline.encode_prompt as the pipeline calls it (classifier-free guidance, the
    default complex human instruction, the empty negative prompt) with the pipeline directory's tokenizer and Gemma-2
    text encoder loaded in `dtype` (eager attention); loading is not timed, `warmup` encodes run before the timed one."""
    import inspect

    import torch
    from diffusers import SanaPipeline
    from transformers import AutoTokenizer, Gemma2Model

    torch.set_num_threads(2)
    dt = getattr(torch, dtype)
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(pipeline, "tokenizer"))
    model = Gemma2Model.from_pretrained(os.path.join(pipeline, "text_encoder"), torch_dtype=dt,
                                        attn_implementation="eager").eval()
    pipe = SanaPipeline(tokenizer=tokenizer, text_encoder=model, vae=None, transformer=None, scheduler=None)
    chi = inspect.signature(SanaPipeline.__call__).parameters["complex_human_instruction"].default
    times = []
    with torch.no_grad():
        for _ in range(warmup + 1):
            t0, c0 = time.time(), time.process_time()
            pe, pm, ne, nm = pipe.encode_prompt(prompt, True, negative_prompt="", device=torch.device("cpu"),
                                                max_sequence_length=msl, complex_human_instruction=chi)
            times.append(time.time() - t0)
            cpu = time.process_time() - c0
    n_chi = len(tokenizer("\n".join(chi)).input_ids)
    print(json.dumps({"impl": "pytorch", "mode": "encode_prompt", "weights": dtype, "threads": torch.get_num_threads(),
                      "warmup": warmup, "instruction_tokens": n_chi, "length_all": n_chi + msl - 2,
                      "valid_selected": int(pm.sum()), "encode_s": round(times[-1], 3), "encode_cpu_s": round(cpu, 3),
                      "first_encode_s": round(times[0], 3), "peak_rss_mib": benchlib.status_kib("VmHWM") >> 10,
                      "max_abs": float(max(pe.float().abs().max(), ne.float().abs().max()))}))


def bundle_main(args):
    """--bundle: a fresh process's text-encoder stage on a real bundle (stored prefix cache, and computed), against
    diffusers' encode_prompt on the pipeline directory the bundle was converted from, one process per case."""
    msl = ["--max-sequence-length", str(args.max_sequence_length)]
    rows = run_cases(
        [[SANA, "bench", "gemma", "--bundle", args.bundle, "--prompt", args.prompt, "--threads", "2"] + msl + flags
         for flags in [[], ["--no-stored-cache"]]]
        + [[sys.executable, os.path.abspath(__file__), "--pipeline-child", args.pipeline, dtype, str(args.warmup),
            "--prompt", args.prompt] + msl for dtype in args.torch.split(",") if dtype])
    ref, cref = torch_bf16(rows) or (None, None)
    print(f"\nFresh process, text-encoder stage, {os.path.basename(args.bundle)} vs {args.pipeline}, prompt {args.prompt!r}, 2 threads")
    print("| implementation | prefix cache | timed | s (CPU s) | vs PyTorch bf16 wall (CPU) | process wall s | peak RSS MiB "
          "| load 1-min before/after |")
    print("|---|---|---|---:|---:|---:|---:|---|")
    for r, wall, rss, lb, la in rows:
        if r["impl"] == "pytorch":
            print(f"| PyTorch {r['weights']} | – | encode_prompt ({r['warmup']} warm-up) | {r['encode_s']:.2f} ({r['encode_cpu_s']:.2f}) "
                  f"| 1.0× (1.0×) | {wall:.1f} | {rss:.0f} | {lb:.1f} / {la:.1f} |")
        else:
            print(f"| SanaEdge | {r['prefix_cache']} | open + encode | {r['stage_s']:.2f} ({r['stage_cpu_s']:.2f}) "
                  f"| {ratio(ref, r['stage_s'])} ({ratio(cref, r['stage_cpu_s'])}) | {wall:.1f} | {rss:.0f} | {lb:.1f} / {la:.1f} |")
    return 0


SANA = os.path.join(ROOT, ".build", "release", "sana")


def run_cases(cmds):
    """Each command in its own process, one after the other: rows of benchlib.run_child, printed as they come."""
    print(f"# {benchlib.machine()}; load average before: {os.getloadavg()}", flush=True)
    rows = []
    for cmd in cmds:
        rows.append(benchlib.run_child(cmd, cwd=ROOT))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def ratio(reference, seconds):
    """How many times faster than the reference ("–" without one)."""
    return f"{reference / seconds:.1f}×" if reference else "–"


def torch_bf16(rows):
    """(wall s, CPU s) of the PyTorch bfloat16 row, the reference of the ratios."""
    return next(((r["encode_s"], r["encode_cpu_s"]) for r, *_ in rows if r["impl"] == "pytorch" and r["weights"] == "bfloat16"), None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", default="int4,int8,f32", help="SanaEdge storage types, comma-separated")
    ap.add_argument("--torch", default="bfloat16,float32", help="PyTorch dtypes, comma-separated")
    ap.add_argument("--instruction-tokens", type=int, default=214)
    ap.add_argument("--prompt-tokens", type=int, default=20)
    ap.add_argument("--max-sequence-length", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=1, help="PyTorch warm-up encodes before the timed one")
    ap.add_argument("--bundle", help="a bundle: time a fresh process's text-encoder stage on it (see bundle_main)")
    ap.add_argument("--pipeline", help="with --bundle: the diffusers directory it was converted from (PyTorch side)")
    ap.add_argument("--prompt", default="a small fluffy white cat sleeping peacefully on a warm sunny windowsill")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--pipeline-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pipeline_child:
        pipeline_case(args.pipeline_child[0], args.pipeline_child[1], args.prompt, args.max_sequence_length,
                      int(args.pipeline_child[2]))
        return 0
    if args.bundle:
        if not args.pipeline:
            ap.error("--bundle needs --pipeline (the PyTorch side)")
        return bundle_main(args)
    counts = ["--instruction-tokens", str(args.instruction_tokens), "--prompt-tokens", str(args.prompt_tokens),
              "--max-sequence-length", str(args.max_sequence_length)]
    if args.child:
        torch_case(args.child[0], args.instruction_tokens, args.prompt_tokens, args.max_sequence_length, int(args.child[1]))
        return 0
    rows = run_cases(
        [[SANA, "bench", "gemma", "--config", CONFIG, "--weights", storage, "--threads", "2"] + counts
         for storage in args.types.split(",") if storage]
        + [[sys.executable, os.path.abspath(__file__), "--child", dtype, str(args.warmup)] + counts
           for dtype in args.torch.split(",") if dtype])
    ref, cref = torch_bf16(rows) or (None, None)
    print(f"\nGemma-2-2B, {args.instruction_tokens} instruction + {args.prompt_tokens} prompt tokens, "
          f"max_sequence_length {args.max_sequence_length}, 2 threads")
    print("| implementation | weights | positions | encode s (CPU s) | vs PyTorch bf16 wall (CPU) "
          "| with prefix cache s (CPU s) | vs PyTorch bf16 wall (CPU) | peak RSS MiB | load 1-min before/after |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|")
    for r, wall, rss, lb, la in rows:
        if r["impl"] == "pytorch":
            print(f"| PyTorch | {r['weights']} | all {r['length_all']} + {args.max_sequence_length} "
                  f"| {r['encode_s']:.2f} ({r['encode_cpu_s']:.2f}) | {ratio(ref, r['encode_s'])} ({ratio(cref, r['encode_cpu_s'])}) | – | – "
                  f"| {rss:.0f} | {lb:.1f} / {la:.1f} |")
        else:
            valid = min(args.instruction_tokens + args.prompt_tokens, r["length_all"])
            print(f"| SanaEdge | {r['weights']} | valid {valid} + 1 | {r['encode_s']:.2f} ({r['encode_cpu_s']:.2f}) "
                  f"| {ratio(ref, r['encode_s'])} ({ratio(cref, r['encode_cpu_s'])}) "
                  f"| {r['encode_cached_s']:.2f} ({r['encode_cached_cpu_s']:.2f}) "
                  f"| {ratio(ref, r['encode_cached_s'])} ({ratio(cref, r['encode_cached_cpu_s'])}) | {rss:.0f} | {lb:.1f} / {la:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
