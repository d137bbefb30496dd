#!/usr/bin/env python3
"""One Linear DiT forward step (the classifier-free-guidance pair as one batch, B = 2; caption length 300 with 120
tokens kept) of a released configuration on random weights: SanaEdge (`sana bench dit`, one process per storage
type) and PyTorch diffusers (float32 and bfloat16, torch.set_num_threads(2), one process per dtype) on the same
configuration and shapes, one process after the other, in the same run. Peak RSS of every case is its own process's
ru_maxrss (wait4). Prints one JSON line per case, then a markdown table. Run from the repository root after
`swift build -c release`:

    ${PYTHON:-/work/main/.venv-ref/bin/python} tools/bench_dit.py --config models/configs/dit_sana_1600m_1024px.json \\
        --size 1024 --types int8,int4,f32 --torch float32,bfloat16
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def torch_case(config, size, dtype, caption, keep, warmup):
    """Runs in the child: builds the model from its config with diffusers' random init (no download), one step."""
    import torch
    from diffusers import SanaTransformer2DModel

    torch.set_num_threads(2)
    torch.manual_seed(0)
    with open(config) as f:
        cfg = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    dt = getattr(torch, dtype)
    torch.set_default_dtype(dt)  # parameters are created in dt: no float32 copy of a bf16 model in the peak
    model = SanaTransformer2DModel(**cfg).eval()
    torch.set_default_dtype(torch.float32)
    side = size // 32
    x = torch.randn(2, cfg["in_channels"], side, side, dtype=dt)
    text = torch.randn(2, caption, cfg["caption_channels"], dtype=dt)
    mask = torch.zeros(2, caption)
    mask[:, :keep] = 1
    g = torch.full((2,), 0.45, dtype=dt) if cfg.get("guidance_embeds") else None
    t = torch.full((2,), 999.0, dtype=dt)
    times = []
    with torch.no_grad():
        for _ in range(warmup + 1):
            t0, c0 = time.time(), time.process_time()
            out = model(x, encoder_hidden_states=text, timestep=t, guidance=g, encoder_attention_mask=mask).sample
            times.append(time.time() - t0)
            cpu = time.process_time() - c0
    print(json.dumps({"impl": "pytorch", "weights": dtype, "size": size, "threads": torch.get_num_threads(),
                      "warmup": warmup, "step_s": round(times[-1], 2), "step_cpu_s": round(cpu, 2), "first_step_s": round(times[0], 2),
                      "peak_rss_mib": benchlib.status_kib("VmHWM") >> 10, "max_abs": float(out.float().abs().max())}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--types", default="int8,int4,f32", help="SanaEdge storage types, comma-separated")
    ap.add_argument("--torch", default="float32,bfloat16", help="PyTorch dtypes, comma-separated")
    ap.add_argument("--warmup", type=int, default=0, help="PyTorch warm-up steps before the timed one")
    ap.add_argument("--prefetch", action="store_true", help="SanaEdge: read the next block while one runs")
    ap.add_argument("--caption", type=int, default=300)
    ap.add_argument("--keep", type=int, default=120)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    config = os.path.abspath(args.config)
    if args.child:
        torch_case(config, args.size, args.child[0], args.caption, args.keep, int(args.child[1]))
        return 0
    print(f"# {benchlib.machine()}; load average before: {os.getloadavg()}", flush=True)
    rows = []
    sana = os.path.join(ROOT, ".build", "release", "sana")
    for storage in [t for t in args.types.split(",") if t]:
        cmd = [sana, "bench", "dit", "--config", config, "--weights", storage, "--size", str(args.size), "--threads", "2",
               "--caption", str(args.caption), "--keep", str(args.keep)] + (["--prefetch"] if args.prefetch else [])
        rows.append(benchlib.run_child(cmd, cwd=ROOT))
        print(json.dumps(rows[-1]), flush=True)
    for dtype in [t for t in args.torch.split(",") if t]:
        cmd = [sys.executable, os.path.abspath(__file__), "--config", config, "--size", str(args.size),
               "--caption", str(args.caption), "--keep", str(args.keep), "--child", dtype, str(args.warmup)]
        rows.append(benchlib.run_child(cmd, cwd=ROOT))
        print(json.dumps(rows[-1]), flush=True)
    ref = {r["weights"]: r["step_s"] for r, *_ in rows if r["impl"] == "pytorch"}
    print(f"\n{os.path.basename(config)} at {args.size}², B = 2, caption {args.caption} ({args.keep} kept), 2 threads")
    cpu = {r["weights"]: r["step_cpu_s"] for r, *_ in rows if r["impl"] == "pytorch"}
    print("| implementation | weights | step s | vs PyTorch bf16 | vs PyTorch f32 | step CPU s | CPU vs bf16 | peak RSS MiB "
          "| load 1-min before/after |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r, wall, rss, lb, la in rows:
        vs = [f"{ref[d] / r['step_s']:.2f}×" if d in ref else "–" for d in ("bfloat16", "float32")]
        vc = f"{cpu['bfloat16'] / r['step_cpu_s']:.2f}×" if "bfloat16" in cpu else "–"
        name = "SanaEdge" if r["impl"] == "sanaedge" else "PyTorch (diffusers)"
        print(f"| {name} | {r['weights']} | {r['step_s']:.2f} | {vs[0]} | {vs[1]} | {r['step_cpu_s']:.2f} | {vc} | {rss:.0f} "
              f"| {lb:.1f} / {la:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
