#!/usr/bin/env python3
"""End-to-end benchmark: the same image (prompt, size, steps, seed, scheduler, guidance 4.5, empty negative prompt)
generated on this machine in one run by SanaEdge (`sana generate` on int4 / int8 / bf16 bundles), diffusers'
SanaPipeline on the CPU (float32, bfloat16) and OpenVINO (int8, int4 weight compression; see peers.py for why it is
not optimum-intel itself). Writes the table to docs/BENCHMARKS.md, section "End to end".

    ${PYTHON:-/work/main/.venv-ref/bin/python} tools/bench_e2e/run.py --small   # Sana-0.6B, 512², 4 steps: minutes
    ${PYTHON:-/work/main/.venv-ref/bin/python} tools/bench_e2e/run.py --full    # Sana-1.6B, 1024², 20 steps

Needs the checkpoints, bundles and OpenVINO IRs under --cache (tools/bench_e2e/make_checkpoints.py and
`peers.py ov-export`; run.py --prepare does both for the chosen mode). Every engine runs in its own child process, one
after another: peak memory is the high-water mark of that child's process tree (the sum of VmRSS over the child and its
descendants, sampled every 50 ms, and the kernel's ru_maxrss of the child from wait4, whichever is larger); time is the
wall clock from spawn to exit ("end to end", including imports and weight loading) and the engine's own stage times.
A child whose tree exceeds --memory-limit is killed and reported as out of memory (so a peer cannot take the machine down).

Long runs can be done engine by engine: every run saves its rows (each with its own time, load average, command and,
for SanaEdge, binary) to CACHE/results-MODE-*.json; `--reuse FILE` keeps the rows of FILE for the engines not run
now, so a table is assembled from partial runs, and rerunning some engines (say SanaEdge with a newer --sana and
bundles converted by it, --bundles) replaces just those rows. `--not-run REASON` lists the engines of the table that no
run has measured with that reason.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
from make_checkpoints import MODEL_SETS, bundle_path  # noqa: E402

MODES = {
    "small": {"pipeline": MODEL_SETS["small"][0], "size": 512, "steps": 4},
    "full": {"pipeline": MODEL_SETS["full"][0], "size": 1024, "steps": 20},
}
PROMPT = "a photo of an astronaut riding a horse on the moon, highly detailed"
SEED = 42
# (engine, variant) in table order.
ENGINES = [("sanaedge", "int4"), ("sanaedge", "int8"), ("sanaedge", "bf16"),
           ("diffusers", "float32"), ("diffusers", "bfloat16"), ("openvino", "int8"), ("openvino", "int4")]
SECTION = "## End to end"
# `sana generate`'s summary line (Sources/sana/Generate.swift).
SUMMARY = re.compile(r"\| encode prompt ([\d.]+)s, denoise ([\d.]+)s, decode ([\d.]+)s \| peak RSS ([\d.]+) (\w+)")
UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def log(msg):
    print(f"[run {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------------------------
# Process-tree memory


def children_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def tree_rss(pid):
    """Sum of VmRSS (bytes) over pid and its descendants."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
        stack.extend(children_of(p))
    return total


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def run_child(cmd, memory_limit, timeout):
    """Runs cmd; returns wall seconds, CPU seconds, peak tree RSS, exit status, stdout, stderr tail, and whether it
    was killed for exceeding memory_limit or timeout."""
    log("$ " + shlex.join(cmd))
    load = os.getloadavg()[0]
    out_path, err_path = f"/tmp/bench_e2e_{os.getpid()}.out", f"/tmp/bench_e2e_{os.getpid()}.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        t0 = time.time()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT, start_new_session=True)
        peak, killed = 0, None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, tree_rss(proc.pid))
            if peak > memory_limit and not killed:
                killed = f"out of memory (> {memory_limit / 2**30:.1f} GiB, killed)"
                os.killpg(proc.pid, signal.SIGKILL)
            elif mem_available() < 512 * 2**20 and not killed:
                # Other jobs share the machine: never push it into the kernel's OOM killer.
                killed = f"out of memory (machine below 512 MiB available at {peak / 2**30:.1f} GiB, killed)"
                os.killpg(proc.pid, signal.SIGKILL)
            elif time.time() - t0 > timeout and not killed:
                killed = f"timed out (> {timeout:.0f} s, killed)"
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(0.05)
        wall = time.time() - t0
    with open(out_path) as f:
        stdout = f.read()
    with open(err_path) as f:
        stderr = f.read()
    os.remove(out_path)
    os.remove(err_path)
    code = os.waitstatus_to_exitcode(status)
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak": max(peak, usage.ru_maxrss * 1024),
            "exit": code, "killed": killed, "stdout": stdout, "stderr": stderr[-4000:], "load_before": load,
            "load_after": os.getloadavg()[0], "command": shlex.join(cmd)}


# ------------------------------------------------------------------------------------------------------------------
# Engines


def command(engine, variant, args, mode, out_png):
    m = MODES[mode]
    pipeline = os.path.join(args.cache, "pipelines", m["pipeline"])
    common = ["--width", str(m["size"]), "--height", str(m["size"]), "--steps", str(args.steps or m["steps"])]
    if engine == "sanaedge":
        return [args.sana, "generate", "--model", bundle_path(args.bundles, m["pipeline"], variant), "--prompt",
                args.prompt, "--seed", str(args.seed), "--output", out_png] + common
    peers = [args.python, os.path.join(HERE, "peers.py")]
    shared = ["--pipeline", pipeline, "--prompt", args.prompt, "--seed", str(args.seed), "--output", out_png] + common
    if engine == "diffusers":
        return peers + ["diffusers", "--dtype", variant] + shared
    return peers + ["openvino", "--ir", os.path.join(args.cache, "openvino", f"{m['pipeline']}-{variant}")] + shared


def parse(engine, raw):
    """Stage times from the child's own report, or None."""
    if engine == "sanaedge":
        m = SUMMARY.search(raw["stdout"])
        if not m:
            return None
        enc, den, dec = (float(m.group(i)) for i in (1, 2, 3))
        return {"encode": enc, "denoise": den, "decode": dec, "generate": enc + den + dec,
                "reported_peak": float(m.group(4)) * UNITS.get(m.group(5), 1)}
    for line in raw["stdout"].splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return None


def failure(raw):
    if raw["killed"]:
        return raw["killed"]
    text = raw["stderr"]
    if "not yet available" in text:
        return "pending: generate not wired on this branch"
    if "MemoryError" in text or "out of memory" in text.lower() or raw["exit"] == -signal.SIGKILL:
        return "out of memory"
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return "failed: " + (lines[-1][:160] if lines else f"exit {raw['exit']}")


def merge_reused(rows, files, mode, steps):
    """Adds the rows of earlier runs (same mode and steps) for engines not run now (the first file that has a row of
    an engine wins); table order follows ENGINES. Each row keeps its own time, load average, command and binary."""
    have = {(r["engine"], r["variant"]) for r in rows}
    for path in files:
        with open(path) as f:
            old = json.load(f)
        old_steps = old.get("steps", old["settings"]["steps"])
        if old["mode"] != mode or old_steps != steps:
            raise SystemExit(f"--reuse {path}: --{old['mode']} with {old_steps} steps, not --{mode} with {steps}")
        for r in old["rows"]:
            if (r["engine"], r["variant"]) not in have:
                r.setdefault("reused", path)
                r.setdefault("when", datetime.datetime.fromtimestamp(os.path.getmtime(path)).strftime("%Y-%m-%d %H:%M"))
                r.setdefault("run_argv", old.get("argv"))
                rows.append(r)
                have.add((r["engine"], r["variant"]))
    order = {e: i for i, e in enumerate(ENGINES)}
    return sorted(rows, key=lambda r: order.get((r["engine"], r["variant"]), len(order)))


def fill_not_run(rows, reason):
    """Rows for the engines of the table that no run measured, with reason (e.g. "not run: time")."""
    have = {(r["engine"], r["variant"]) for r in rows}
    extra = [{"engine": e, "variant": v, "status": reason} for e, v in ENGINES if (e, v) not in have]
    order = {e: i for i, e in enumerate(ENGINES)}
    return sorted(rows + extra, key=lambda r: order.get((r["engine"], r["variant"]), len(order)))


def disk_bytes(engine, variant, args, mode):
    """Size of what the engine reads: the bundle, the checkpoint's safetensors (bf16 files, also for float32), or
    the IR's .bin files."""
    m = MODES[mode]
    if engine == "sanaedge":
        path = bundle_path(args.bundles, m["pipeline"], variant)
        return os.path.getsize(path) if os.path.exists(path) else None
    root = (os.path.join(args.cache, "pipelines", m["pipeline"]) if engine == "diffusers"
            else os.path.join(args.cache, "openvino", f"{m['pipeline']}-{variant}"))
    ext = ".safetensors" if engine == "diffusers" else ".bin"
    total = 0
    for d, _, files in os.walk(root, followlinks=True):
        total += sum(os.path.getsize(os.path.join(d, f)) for f in files if f.endswith(ext))
    return total or None


def missing_input(engine, variant, args, mode):
    m = MODES[mode]
    if engine == "sanaedge":
        if not os.access(args.sana, os.X_OK):
            return f"not run: no executable {args.sana}"
        if not os.path.exists(bundle_path(args.bundles, m["pipeline"], variant)):
            return "not run: bundle missing (make_checkpoints.py --convert)"
    if engine == "openvino":
        ir = os.path.join(args.cache, "openvino", f"{m['pipeline']}-{variant}")
        if not all(os.path.exists(os.path.join(ir, c, "openvino_model.xml")) for c in ("text_encoder", "transformer",
                                                                                      "vae_decoder")):
            return "not run: OpenVINO IR missing (peers.py ov-export)"
    if engine != "sanaedge" and not os.path.exists(os.path.join(args.cache, "pipelines", m["pipeline"])):
        return "not run: checkpoint missing (make_checkpoints.py)"
    return None


# ------------------------------------------------------------------------------------------------------------------
# Report


def machine():
    model = "unknown CPU"
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in flags]
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 2**20
    versions = []
    for mod in ("torch", "diffusers", "transformers", "openvino", "nncf"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except Exception:
            versions.append(f"{mod} absent")
    return (f"{model}, {os.cpu_count()} cores ({', '.join(isa)}), {mem:.0f} GiB RAM, Linux {platform.release()}, "
            f"Python {platform.python_version()}; {', '.join(versions)}")


def reference_row(rows):
    """The image every other is compared with: diffusers float32's, or bfloat16's when float32 did not run."""
    for variant in ("float32", "bfloat16"):
        ref = next((r for r in rows if r["engine"] == "diffusers" and r["variant"] == variant and r.get("ok")
                    and os.path.exists(r.get("image", ""))), None)
        if ref:
            return ref
    return None


def compare_images(rows):
    """Mean |Δ| (8-bit levels) of each image against the reference's (reference_row): a check that every engine made
    the same image (random weights give a noise-like image, so this is a consistency check, not a quality measure).
    A row keeps a difference computed earlier against the same reference (its image may since have been overwritten
    by a run with other settings; rows saved before image_ref existed were computed against float32 at their run)."""
    import numpy as np
    from PIL import Image

    ref = reference_row(rows)
    if ref is None:
        return
    base = None
    for r in rows:
        if r.get("image_diff") is not None and r.get("image_ref", ref["image"]) == ref["image"]:
            continue
        if r.get("ok") and os.path.exists(r["image"]):
            if base is None:
                base = np.asarray(Image.open(ref["image"]), dtype=np.float32)
            img = np.asarray(Image.open(r["image"]), dtype=np.float32)
            r["image_diff"] = float(np.abs(img - base).mean()) if img.shape == base.shape else None
            r["image_ref"] = ref["image"]


def wrap(text):
    return textwrap.fill(text, width=118, break_long_words=False, break_on_hyphens=False)


def fmt(x, digits=1):
    return "—" if x is None else f"{x:.{digits}f}"


def table(rows, steps):
    peers = [r for r in rows if r["engine"] != "sanaedge" and r.get("ok")]
    fastest = min((r["wall"] for r in peers), default=None)
    leanest = min((r["cpu"] for r in peers), default=None)
    ref = reference_row(rows)
    ref_name = f"diffusers {ref['variant']}" if ref else "diffusers float32"
    head = ("| engine | weights | encode prompt (s) | denoise (s) | per step (s) | decode (s) | generate (s) "
            "| end to end (s) | CPU (s) | peak RSS (MiB) | vs fastest peer: end to end / CPU (> 1 = faster) "
            f"| model on disk (MiB) | image mean abs diff vs {ref_name} | load avg (run at) |")
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        name = {"sanaedge": "SanaEdge", "diffusers": "diffusers (PyTorch)", "openvino": "OpenVINO"}[r["engine"]]
        if not r.get("ok"):
            lines.append(f"| {name} | {r['variant']} | {r['status']} |" + " |" * 11)
            continue
        s = r["stages"]
        ratio = f"{fastest / r['wall']:.2f}× / {leanest / r['cpu']:.2f}×" if fastest else "—"
        lines.append(f"| {name} | {r['variant']} | {fmt(s['encode'])} | {fmt(s['denoise'])} | "
                     f"{fmt(s['denoise'] / steps, 2)} | {fmt(s['decode'])} | {fmt(s['generate'])} | {fmt(r['wall'])} | "
                     f"{fmt(r['cpu'])} | {r['peak'] / 2**20:.0f} | {ratio} | "
                     f"{fmt(r['disk'] / 2**20 if r.get('disk') else None, 0)} | {fmt(r.get('image_diff'), 2)} "
                     f"| {r['load_before']:.1f}→{r['load_after']:.1f} ({r.get('when', '?')[-5:]}) |")
    return "\n".join(lines)


def write_section(path, text, key):
    """Replaces the subsection of docs/BENCHMARKS.md's "End to end" section whose heading contains key (one per mode
    and step count), or adds it at the top of the section (adding the section if missing). The other subsections (the
    hand-written reading, other modes) and the other sections stay untouched."""
    with open(path) as f:
        doc = f.read()
    body = text.strip() + "\n"
    start = doc.find("\n" + SECTION + "\n")
    if start < 0:
        doc = doc.rstrip("\n") + "\n\n" + SECTION + "\n\n" + body
    else:
        end = doc.find("\n## ", start + 1)
        end = len(doc) if end < 0 else end + 1
        section = doc[start + 1:end]
        old = next((m for m in re.finditer(r"^### .*$", section, re.M) if key in m.group(0)), None)
        if old is None:
            head = len(SECTION) + 1
            section = section[:head] + "\n" + body + section[head:]
        else:
            nxt = re.compile(r"^##", re.M).search(section, old.end())
            section = section[:old.start()] + body + ("\n" + section[nxt.start():] if nxt else "")
        doc = doc[:start + 1] + section + doc[end:]
    with open(path, "w") as f:
        f.write(doc)


def argv_value(argv, flag):
    """The value given to flag in a saved run.py argv, or None."""
    for i, a in enumerate(argv or []):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a[len(flag) + 1:]
    return None


def run_span(rows, started):
    """"2026-11-29 07:10" for one run, "2026-11-29 07:10–08:40" for rows of several runs."""
    times = sorted(r["when"] for r in rows if r.get("when") and r.get("command"))
    if not times:
        return started
    first, last = times[0], times[-1]
    if first == last:
        return first
    return f"{first}–{last[11:]}" if first[:10] == last[:10] else f"{first}–{last}"


def sanaedge_notes(rows):
    """One line per SanaEdge binary that produced rows of the table."""
    seen = {}
    for r in rows:
        if r["engine"] == "sanaedge" and r.get("command"):
            key = (r.get("sana") or shlex.split(r["command"])[0],
                   r.get("sana_note", argv_value(r.get("run_argv"), "--sana-note") or ""))
            seen.setdefault(key, []).append(r["variant"])
    return [f"SanaEdge {', '.join(v)}: `{b}`" + (f" ({n})" if n else "") + "." for (b, n), v in seen.items()]


def report(args, mode, rows, started, argv):
    m = MODES[mode]
    steps = args.steps or m["steps"]
    title = {"small": "Sana-0.6B (0.6B-512px config) at 512²", "full": "Sana-1.6B (1.6B-1024px config) at 1024²"}[mode]
    cmds = "\n".join(f"    {r['command']}" for r in rows if r.get("command"))
    runs = []  # the run.py invocations that measured the rows, in the order they ran
    for r in sorted((r for r in rows if r.get("command")), key=lambda r: r.get("when", "")):
        if r.get("run_argv") and r["run_argv"] not in runs:
            runs.append(r["run_argv"])
    runs = runs or [argv]
    lines = [
        f"### {title}, {steps} steps (`run.py --{mode}`, {run_span(rows, started)})",
        "",
        wrap(f"Machine: {machine()}."),
        "",
        wrap(f"Same image for every engine: prompt \"{args.prompt}\", empty negative prompt, seed {args.seed}, guidance 4.5, "
        f"DPM-Solver++ (flow, Sana's release scheduler config), complex human instruction on, max sequence length "
        f"300; full-size random weights in the released configurations (Gemma-2-2B, DC-AE f32c32-sana-1.0, "
        f"the DiT from `models/configs/`), built by `tools/bench_e2e/make_checkpoints.py` in bf16. Each engine ran in "
        f"its own process, one after another, with all cores. \"End to end\" is the child's wall time from spawn to exit "
        f"(imports, weight loading, compilation, generation, PNG); \"generate\" excludes loading; \"CPU\" is the child's "
        f"user + system time; peak RSS is the high-water mark of the child's process tree; \"image mean abs diff\" is the "
        f"mean |Δ| in 8-bit levels against diffusers' PNG (a same-image check). \"vs fastest peer\" divides the fastest "
        f"peer's end-to-end time by the row's, and the smallest peer CPU time by the row's CPU time. The machine is "
        f"shared (load average before→after each run, and the time it ran, in the last column): wall-clock ratios "
        f"move with the load of the moment, CPU-time ratios much less."),
        "",
        table(rows, steps),
        "",
        wrap(peer_notes(args, mode, rows)),
        "",
        "\n".join(wrap(n) for n in sanaedge_notes(rows)),
        "",
        wrap("Targets of issue 8 (measured, not asserted): Sana-1.6B at 1024², 20 steps, int4 — end to end ≥ 2× faster "
             "than the fastest peer, peak ≤ 1 GB (`run.py --full`); Sana-0.6B at 512², 20 steps, int8 — under 40 s end "
             "to end on 2 cores (`run.py --small --steps 20 --engines sanaedge:int8`, on a quiet machine)."),
        "",
        "Commands (run.py, then the child of each row in table order):",
        "",
        "\n".join("    " + shlex.join(a) for a in runs),
        cmds,
    ]
    return "\n".join(lines)


def peer_notes(args, mode, rows):
    ov = {}
    ir = os.path.join(args.cache, "openvino", f"{MODES[mode]['pipeline']}-int8", "export.json")
    if os.path.exists(ir):
        with open(ir) as f:
            ov = json.load(f)
    hint = next((r["stages"].get("inference_precision") for r in rows if r["engine"] == "openvino" and r.get("ok")),
                "?")
    return (
        "OpenVINO: optimum-intel 2.2.0 does export Sana (`OVSanaPipeline`), but it pins transformers < 5.6 and "
        "huggingface-hub < 1.22 and fails to import with the reference environment's transformers 5.24 (ImportError "
        "in its modeling_visual_language), so installing it would have downgraded the shared environment. "
        "`tools/bench_e2e/peers.py` does what its exporter does for Sana, with openvino "
        f"{ov.get('openvino', '?').split('-')[0]} and nncf {ov.get('nncf', '?')} directly: each component loaded in "
        "bf16 and made traceable with OpenVINO's 16-bit patch, `openvino.convert_model` with dynamic shapes (traced at "
        "the benchmark size), `nncf.compress_weights` with optimum-intel's defaults (int8: INT8_ASYM per channel; "
        "int4: INT4_ASYM, group 128 (nncf's ADJUST fallback, a smaller power-of-two group, where 128 does not divide a "
        "layer's width), ratio 1.0, nncf's INT8_ASYM backup for the embedding)"
        + (f"; {', '.join(sorted(ov['shared']))} shared with the IRs of {ov['shared'][sorted(ov['shared'])[0]].split('/')[0][:-5]} "
           "(the same checkpoint files, linked by `run.py --prepare`, checked by `check_shared_ir.py`)"
           if ov.get("shared") else "")
        + ", the three IRs compiled "
        f"at load (CPU inference precision {hint}), driven by diffusers' own SanaPipeline code (same tokenizer, "
        "scheduler and guidance as the PyTorch rows). The one-off conversions (`sana convert`, the OpenVINO export) "
        "are not in the table. diffusers loads the bf16 checkpoint and casts to the row's dtype."
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--small", action="store_true", help="Sana-0.6B at 512², 4 steps")
    mode.add_argument("--full", action="store_true", help="Sana-1.6B at 1024², 20 steps")
    ap.add_argument("--cache", default="/work/bench-cache", help="checkpoints, bundles, IRs and images (not in git)")
    ap.add_argument("--sana", default=os.path.join(ROOT, ".build", "release", "sana"))
    ap.add_argument("--bundles", help="where SanaEdge's bundles are (default: CACHE/bundles; see make_checkpoints.py)")
    ap.add_argument("--sana-note", default="", help="where the --sana binary comes from (printed under the table)")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the peers")
    ap.add_argument("--engines", default=",".join(f"{e}:{v}" for e, v in ENGINES),
                    help="comma-separated engine:variant list (default: all)")
    ap.add_argument("--steps", type=int, help="override the mode's step count")
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--memory-limit", type=float, help="GiB per child (default: MemAvailable at start − 1 GiB)")
    ap.add_argument("--timeout", type=float, default=3 * 3600, help="seconds per child")
    ap.add_argument("--prepare", action="store_true", help="build missing checkpoints, bundles and IRs first")
    ap.add_argument("--convert", default="int4,int8,bf16", help="with --prepare: the bundles to convert")
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "BENCHMARKS.md"), help="'' to not write")
    ap.add_argument("--from-results", help="rewrite the report of a saved results JSON (no engine runs)")
    ap.add_argument("--reuse", action="append", default=[],
                    help="results JSON of an earlier run of the same mode and steps: its rows of engines not run now "
                         "are kept, each with its own time and load (repeatable; the first file with a row wins)")
    ap.add_argument("--not-run", help="reason shown for the engines of the table that no run measured, e.g. "
                                      "'not run: time' (default: leave them out)")
    args = ap.parse_args()
    mode = "small" if args.small else "full"
    m = MODES[mode]
    steps = args.steps or m["steps"]
    args.bundles = args.bundles or os.path.join(args.cache, "bundles")
    limit = args.memory_limit * 2**30 if args.memory_limit else mem_available() - 2**30
    if args.prepare:
        prepare(args, mode)
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    os.makedirs(os.path.join(args.cache, "images"), exist_ok=True)
    rows, argv = [], [args.python, "tools/bench_e2e/run.py"] + sys.argv[1:]
    results = os.path.join(args.cache, f"results-{mode}-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.json")

    def save(rows):
        """Writes the results so far (after every row, so a long run that is stopped keeps its finished rows)."""
        with open(results + ".tmp", "w") as f:
            json.dump({"mode": mode, "settings": m, "steps": steps, "rows": rows, "argv": argv, "started": started},
                      f, indent=1)
        os.replace(results + ".tmp", results)

    if args.from_results:
        with open(args.from_results) as f:
            saved = json.load(f)
        rows, argv, started = saved["rows"], saved.get("argv", argv), saved.get("started", started)
        for r in rows:
            r.setdefault("run_argv", argv)
        args.engines = ""
    for item in filter(None, args.engines.split(",")):
        engine, variant = item.split(":")
        row = {"engine": engine, "variant": variant, "when": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
               "run_argv": argv}
        if engine == "sanaedge":
            row.update({"sana": args.sana, "sana_note": args.sana_note})
        rows.append(row)
        reason = missing_input(engine, variant, args, mode)
        if reason:
            row["status"] = reason
            log(f"{engine} {variant}: {reason}")
            continue
        png = os.path.join(args.cache, "images", f"{mode}-{steps}steps-{engine}-{variant}.png")
        row["image"] = png
        row["disk"] = disk_bytes(engine, variant, args, mode)
        raw = run_child(command(engine, variant, args, mode, png), limit, args.timeout)
        stages = parse(engine, raw) if raw["exit"] == 0 else None
        row.update({k: raw[k] for k in ("wall", "cpu", "peak", "load_before", "load_after", "command", "exit")})
        if stages:
            row.update({"ok": True, "stages": stages})
            log(f"{engine} {variant}: end to end {raw['wall']:.1f} s, peak {raw['peak'] / 2**20:.0f} MiB, {stages}")
        else:
            row["status"] = failure(raw)
            row["stderr"] = raw["stderr"][-1500:]
            log(f"{engine} {variant}: {row['status']}")
        save(merge_reused(list(rows), args.reuse, mode, steps))
    rows = merge_reused(rows, args.reuse, mode, steps)
    for r in rows:
        r.setdefault("disk", disk_bytes(r["engine"], r["variant"], args, mode))
    compare_images(rows)
    text = report(args, mode, fill_not_run(rows, args.not_run) if args.not_run else rows, started, argv)
    print(text)
    save(rows)
    log(f"saved {results}")
    if args.doc:
        write_section(args.doc, text, f"{steps} steps (`run.py --{mode}`")
        log(f"wrote {args.doc} section '{SECTION}'")


# OpenVINO components that one mode's IR set can take from another's: the same checkpoint files (the pipelines link
# the same components/ directory) give the same IR, since the shapes are dynamic and weight compression is data-free.
# The text encoder never sees the image size. The DC-AE decoder is traced at the other mode's latent size, which is
# sound because its only size-dependent Python branch (diffusers' SanaMultiscaleAttnProcessor2_0: linear attention
# when height·width > attention_head_dim = 32) takes the linear path at every EfficientViT stage for 512² and 1024²
# alike (latents of 16² and 32² and larger); docs/BENCHMARKS.md records the numerical check of the 1024² decode.
SHAREABLE = {"text_encoder": "text_encoder", "vae_decoder": "vae"}


def shared_ir(args, mode, component, weights, ir):
    """Links ir/component to another mode's IR of the same checkpoint component; returns what it linked, or None."""
    if component not in SHAREABLE:
        return None
    here = os.path.realpath(os.path.join(args.cache, "pipelines", MODES[mode]["pipeline"], SHAREABLE[component]))
    for other, m in MODES.items():
        name = f"{m['pipeline']}-{weights}"
        src = os.path.join(args.cache, "openvino", name, component)
        theirs = os.path.realpath(os.path.join(args.cache, "pipelines", m["pipeline"], SHAREABLE[component]))
        if other != mode and theirs == here and os.path.exists(os.path.join(src, "openvino_model.xml")):
            os.makedirs(ir, exist_ok=True)
            os.symlink(os.path.join("..", name, component), os.path.join(ir, component))
            log(f"{ir}/{component} -> {src} (same checkpoint component)")
            return f"{name}/{component}"
    return None


def prepare(args, mode):
    """Checkpoints and bundles (make_checkpoints.py), then the OpenVINO IR sets for int8 and int4: components shared
    with the other mode's IRs are linked, the others exported once per component for both weights (one trace)."""
    m = MODES[mode]
    subprocess.run([args.python, os.path.join(HERE, "make_checkpoints.py"), "--cache", args.cache, "--models", mode,
                    "--sana", args.sana, "--bundles", args.bundles,
                    "--convert", args.convert if os.access(args.sana, os.X_OK) else ""], check=True)
    from peers import COMPONENTS, write_export_json

    pipeline = os.path.join(args.cache, "pipelines", m["pipeline"])
    irs = {w: os.path.join(args.cache, "openvino", f"{m['pipeline']}-{w}") for w in ("int8", "int4")}
    irs = {w: ir for w, ir in irs.items() if not os.path.exists(os.path.join(ir, "export.json"))}
    shared = {w: {} for w in irs}
    for c in ("vae_decoder", "transformer", "text_encoder"):
        need = {}
        for w, ir in irs.items():
            if os.path.exists(os.path.join(ir, c, "openvino_model.xml")):
                continue
            link = shared_ir(args, mode, c, w, ir)
            if link:
                shared[w][c] = link
            else:
                need[w] = ir
        if need:
            subprocess.run([args.python, os.path.join(HERE, "peers.py"), "ov-export", "--pipeline", pipeline,
                            "--ir", ",".join(need.values()), "--weights", ",".join(need), "--width", str(m["size"]),
                            "--height", str(m["size"]), "--component", c], check=True)
    for w, ir in irs.items():
        write_export_json(ir, w, [m["size"], m["size"]], pipeline, shared[w] or None)
        if not all(os.path.exists(os.path.join(ir, c, "openvino_model.xml")) for c in COMPONENTS):
            raise SystemExit(f"{ir}: incomplete IR set")


if __name__ == "__main__":
    main()
