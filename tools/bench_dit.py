#!/usr/bin/env python3
"""One DiT forward step (the CFG pair, B = 2, caption length 300) of a released configuration on random weights:
SanaEdge per storage type (each in its own process, via the opt-in SanaTransformerBenchTests, so peak RSS is that
type's) and PyTorch diffusers in float32 and bfloat16 with 2 threads, in the same run. Prints a markdown table.

    ${PYTHON:-/work/main/.venv-ref/bin/python} tools/bench_dit.py --config models/configs/dit_sana_600m_512px.json \
        --size 512 --types f32,int8,int4
"""
import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def swift_step(config: str, size: int, storage: str, prefetch: bool) -> dict:
    env = dict(os.environ, SANA_BENCH_DIT_CONFIG=os.path.abspath(config), SANA_BENCH_DIT_TYPE=storage,
               SANA_BENCH_DIT_SIZE=str(size), SANA_BENCH_DIT_PREFETCH="1" if prefetch else "0")
    out = subprocess.run(["swift", "test", "-c", "release", "-Xswiftc", "-enable-testing",
                          "--filter", "SanaTransformerBenchTests"], cwd=ROOT, env=env, capture_output=True, text=True)
    m = re.search(r"BENCH dit (.*)", out.stdout)
    if not m:
        sys.exit(f"swift bench failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return dict(kv.split("=", 1) for kv in m.group(1).split())


def torch_step(config: str, size: int, dtype: str) -> dict:
    # A child process per dtype so ru_maxrss is that run's.
    code = f"""
import json, resource, time, torch
from diffusers import SanaTransformer2DModel
torch.set_num_threads(2)
cfg = {{k: v for k, v in json.load(open({config!r})).items() if not k.startswith('_')}}
dtype = getattr(torch, {dtype!r})
model = SanaTransformer2DModel(**cfg).to(dtype).eval()
side = {size} // 32
x = torch.randn(2, cfg['in_channels'], side, side, dtype=dtype)
text = torch.randn(2, 300, cfg['caption_channels'], dtype=dtype)
mask = torch.zeros(2, 300); mask[:, :120] = 1
g = torch.full((2,), 0.45, dtype=dtype) if cfg.get('guidance_embeds') else None
with torch.no_grad():
    t0 = time.time()
    model(x, encoder_hidden_states=text, timestep=torch.full((2,), 999.0), guidance=g, encoder_attention_mask=mask)
    dt = time.time() - t0
print(json.dumps(dict(step_seconds=dt, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"torch bench failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--types", default="f32,int8,int4")
    ap.add_argument("--torch", default="float32,bfloat16")
    ap.add_argument("--prefetch", action="store_true")
    args = ap.parse_args()
    rows = []
    for dtype in [t for t in args.torch.split(",") if t]:
        r = torch_step(args.config, args.size, dtype)
        rows.append((f"PyTorch {dtype}", float(r["step_seconds"]), float(r["peak_rss_mb"]), ""))
        print(rows[-1], file=sys.stderr)
    for storage in [t for t in args.types.split(",") if t]:
        r = swift_step(args.config, args.size, storage, args.prefetch)
        rows.append((f"SanaEdge {storage}", float(r["step_seconds"]), float(r["peak_rss_mb"]),
                     f"kernels {r['kernels']}"))
        print(rows[-1], file=sys.stderr)
    bf16 = next((s for n, s, _, _ in rows if n == "PyTorch bfloat16"), None)
    print(f"{os.path.basename(args.config)} at {args.size}², B = 2, L = 300, 2 threads")
    print("| runtime | step (s) | vs PyTorch bf16 | peak RSS (MB) | note |")
    print("| --- | --- | --- | --- | --- |")
    for name, s, mb, note in rows:
        ratio = f"{bf16 / s:.2f}×" if bf16 else "–"
        print(f"| {name} | {s:.2f} | {ratio} | {mb:.0f} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
