#!/usr/bin/env python3
"""DC-AE decode benchmark: SanaEdge (`sana bench dcae`) against diffusers AutoencoderDC, same weights, same run.

Builds a full-size AutoencoderDC from models/configs/dc-ae-f32c32-sana-1.0.json with random weights (torch's default
init, seed 0) once, saved under $SANA_BENCH_CACHE (default ~/.cache/sanaedge/bench) — never committed. Then runs each
case in its own process (so peak RSS is per case) and prints one JSON line per case plus a markdown table.
Decode CPU s is the process's CPU time (all threads) over the decode: on a shared machine it compares the two
implementations better than wall time. Peak RSS is the process's VmHWM after loading is reset (/proc/self/clear_refs), so it is the decode's peak including
the resident weights.

Both decode the same latent (N(0, 1), numpy seed 0, cached as latent-SIZE.npy next to the weights). With --dump-dir,
each case's image is saved and compared with diffusers float32's (8-bit PSNR, max level difference): the
faithfulness criterion of docs/NUMERICS.md "DC-AE".

Run from the repository root after `swift build -c release` (SANA_BIN overrides the binary, e.g. a copy so that
rebuilding during a long run does not change it):
  ${PYTHON:-/work/main/.venv-ref/bin/python} tools/bench_dcae.py [--cases ours:f32:1024:off,torch:bfloat16:1024,...] [--dump-dir DIR]
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


def latent_file(vae, size):
    """The latent both implementations decode: N(0, 1), numpy seed 0, [1, 32, size/32, size/32], cached next to the weights."""
    import numpy as np
    path = os.path.join(os.path.dirname(vae), f"latent-{size}.npy")
    if not os.path.exists(path):
        side = size // 32
        np.save(path, np.random.RandomState(0).standard_normal((1, 32, side, side)).astype(np.float32))
    return path


def to_8bit(img):
    """The pipeline's postprocess: [-1, 1] → [0, 1] → 8-bit levels."""
    import numpy as np
    return np.round(np.clip(img / 2 + 0.5, 0, 1) * 255).astype(np.int32)


def compare(dump_dir, rows):
    """Each dumped image against diffusers float32's: PSNR of the 8-bit images, max level difference, relative max error."""
    import numpy as np
    ref_path = os.path.join(dump_dir, "diffusers-float32.npy")
    if not os.path.exists(ref_path):
        return
    ref = np.load(ref_path).astype(np.float64)
    ref8 = to_8bit(ref)
    print("\n| implementation | weights | PSNR vs diffusers f32 (8-bit) | max level diff | pixels > 2 levels | rel. max error |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        img = np.load(r["dump"]).astype(np.float64)
        d8 = np.abs(to_8bit(img) - ref8)
        mse = float(np.mean(d8.astype(np.float64) ** 2))
        psnr = float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
        rel = float(np.abs(img - ref).max() / np.abs(ref).max())
        print(f"| {r['impl']} | {r['weights']} | {psnr:.1f} dB | {int(d8.max())} | {float(np.mean(d8 > 2)) * 100:.3f} % | {rel:.2e} |")


def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def torch_case(vae, dtype, size, dump):
    """Runs in a child process: one diffusers decode, 2 threads."""
    import numpy as np
    import torch
    from diffusers import AutoencoderDC
    torch.set_num_threads(2)
    ae = AutoencoderDC.from_pretrained(vae, torch_dtype=getattr(torch, dtype)).eval()
    z = torch.from_numpy(np.load(latent_file(vae, size))).to(ae.dtype)
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    t, cpu = time.time(), time.process_time()
    with torch.no_grad():
        img = ae.decode(z).sample
    seconds, cpu_seconds = time.time() - t, time.process_time() - cpu
    if dump != "-":
        np.save(dump, img.float().numpy())
    print(json.dumps({"impl": "diffusers", "weights": dtype, "size": size, "tiling": "off", "decode_s": round(seconds, 1),
                      "decode_cpu_s": round(cpu_seconds, 1),
                      "rss_before_decode_mib": before >> 10, "peak_rss_mib": status("VmHWM") >> 10,
                      "max_abs": float(img.float().abs().max())}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default=DEFAULT_CASES, help="comma-separated ours:TYPE:SIZE:TILING | torch:DTYPE:SIZE")
    ap.add_argument("--dump-dir", help="write each case's image (.npy) here and compare them with diffusers float32's")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        torch_case(args.child[0], args.child[1], int(args.child[2]), args.child[3])
        return
    vae = weights_dir()
    load = os.getloadavg()
    print(f"# load average before: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; cpus: {os.cpu_count()}", flush=True)
    rows = []
    for case in args.cases.split(","):
        parts = case.split(":")
        dump = "-"
        if args.dump_dir:
            os.makedirs(args.dump_dir, exist_ok=True)
            name = "sanaedge-" + "-".join(parts[1:]) if parts[0] == "ours" else f"diffusers-{parts[1]}"
            dump = os.path.join(args.dump_dir, name + ".npy")
        if parts[0] == "ours":
            cmd = [os.environ.get("SANA_BIN", os.path.join(ROOT, ".build", "release", "sana")), "bench", "dcae", "--vae", vae, "--weights", parts[1],
                   "--size", parts[2], "--tiling", parts[3], "--latent", latent_file(vae, int(parts[2]))]
            if dump != "-":
                cmd += ["--dump", dump]
        else:
            cmd = [sys.executable, os.path.abspath(__file__), "--child", vae, parts[1], parts[2], dump]
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = next((l for l in out.stdout.splitlines() if l.startswith("{")), None)
        if line is None:
            print(f"# {case} failed: {out.stderr[-2000:]}", flush=True)
            continue
        row = json.loads(line)
        row["load_after"] = round(os.getloadavg()[0], 1)
        if dump != "-":
            row["dump"] = dump
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| implementation | weights | output | tiling | decode s | decode CPU s | peak RSS MiB | load avg after |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['impl']} | {r['weights']} | {r['size']}² | {r['tiling']} | {r['decode_s']} | {r.get('decode_cpu_s', '')} "
              f"| {r['peak_rss_mib']} | {r['load_after']} |")
    if args.dump_dir:
        compare(args.dump_dir, rows)


if __name__ == "__main__":
    main()
