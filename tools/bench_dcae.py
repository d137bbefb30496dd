#!/usr/bin/env python3
"""DC-AE decode benchmark: SanaEdge (`sana bench dcae`) against diffusers AutoencoderDC, same weights, same run.

Builds a full-size AutoencoderDC from models/configs/dc-ae-f32c32-sana-1.0.json with random weights (torch's default
init, seed 0) once, saved under $SANA_BENCH_CACHE (default ~/.cache/sanaedge/bench) — never committed. Then runs each
case in its own process (so peak RSS is per case) and prints one JSON line per case plus a markdown table.
Decode CPU s is the process's CPU time (all threads) over the decode: on a shared machine it compares the two
implementations better than wall time. Peak RSS is the process's VmHWM after loading is reset (/proc/self/clear_refs), so it is the decode's peak including
the resident weights.

Run from the repository root after `swift build -c release`:
  ${PYTHON:-/work/main/.venv-ref/bin/python} tools/bench_dcae.py [--cases ours:f32:1024:off,torch:bfloat16:1024,...]
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CONFIG = os.path.join(ROOT, "models", "configs", "dc-ae-f32c32-sana-1.0.json")
DEFAULT_CASES = ",".join([
    "ours:f32:1024:off", "torch:float32:1024", "torch:bfloat16:1024",
    "ours:bf16:1024:off", "ours:int8:1024:off", "ours:f32:4096:768",
])


def weights_dir():
    d = os.path.join(os.environ.get("SANA_BENCH_CACHE", os.path.expanduser("~/.cache/sanaedge/bench")), "dc-ae-f32c32-sana-1.0")
    if not os.path.exists(os.path.join(d, "diffusion_pytorch_model.safetensors")):
        import torch
        from diffusers import AutoencoderDC
        torch.manual_seed(0)
        with open(CONFIG) as f:
            config = json.load(f)
        AutoencoderDC.from_config(config).save_pretrained(d, safe_serialization=True)
    return d


def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def torch_case(vae, dtype, size):
    """Runs in a child process: one diffusers decode, 2 threads."""
    import torch
    from diffusers import AutoencoderDC
    torch.set_num_threads(2)
    ae = AutoencoderDC.from_pretrained(vae, torch_dtype=getattr(torch, dtype)).eval()
    side = size // 32
    z = torch.randn(1, ae.config.latent_channels, side, side, generator=torch.Generator().manual_seed(0)).to(ae.dtype)
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    t, cpu = time.time(), time.process_time()
    with torch.no_grad():
        img = ae.decode(z).sample
    seconds, cpu_seconds = time.time() - t, time.process_time() - cpu
    print(json.dumps({"impl": "diffusers", "weights": dtype, "size": size, "tiling": "off", "decode_s": round(seconds, 1),
                      "decode_cpu_s": round(cpu_seconds, 1),
                      "rss_before_decode_mib": before >> 10, "peak_rss_mib": status("VmHWM") >> 10,
                      "max_abs": float(img.float().abs().max())}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default=DEFAULT_CASES, help="comma-separated ours:TYPE:SIZE:TILING | torch:DTYPE:SIZE")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        torch_case(args.child[0], args.child[1], int(args.child[2]))
        return
    vae = weights_dir()
    load = os.getloadavg()
    print(f"# load average before: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; cpus: {os.cpu_count()}", flush=True)
    rows = []
    for case in args.cases.split(","):
        parts = case.split(":")
        if parts[0] == "ours":
            cmd = [os.path.join(ROOT, ".build", "release", "sana"), "bench", "dcae", "--vae", vae, "--weights", parts[1],
                   "--size", parts[2], "--tiling", parts[3]]
        else:
            cmd = [sys.executable, os.path.abspath(__file__), "--child", vae, parts[1], parts[2]]
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = next((l for l in out.stdout.splitlines() if l.startswith("{")), None)
        if line is None:
            print(f"# {case} failed: {out.stderr[-2000:]}", flush=True)
            continue
        row = json.loads(line)
        row["load_after"] = round(os.getloadavg()[0], 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| implementation | weights | output | tiling | decode s | decode CPU s | peak RSS MiB | load avg after |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['impl']} | {r['weights']} | {r['size']}² | {r['tiling']} | {r['decode_s']} | {r.get('decode_cpu_s', '')} "
              f"| {r['peak_rss_mib']} | {r['load_after']} |")


if __name__ == "__main__":
    main()
