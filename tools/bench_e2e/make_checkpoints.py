#!/usr/bin/env python3
"""Builds full-size random-weight Sana pipelines in the diffusers layout with the real released configurations, for
the end-to-end benchmark (tools/bench_e2e/run.py), and converts them with `sana convert` at each storage type.

    ${PYTHON:-/work/main/.venv-ref/bin/python} tools/bench_e2e/make_checkpoints.py [--cache /work/bench-cache]
        [--models small|full|all] [--convert int4,int8,bf16] [--sana .build/release/sana] [--bundles DIR]

Layout under --cache (nothing of it goes into git):
  components/gemma-2-2b/          text encoder: models/configs/gemma-2-2b.json, bf16, 1 GB shards + index (transformers names)
  components/tokenizer/           Gemma-layout tokenizer (the fixture builder of tools/fixtures/make_gemma.py) with its
                                  vocabulary padded to 256000 entries, so len(tokenizer) matches the embedding
  components/dc-ae-f32c32-sana-1.0/  DC-AE (models/configs/dc-ae-f32c32-sana-1.0.json), bf16
  components/scheduler/           DPMSolverMultistepScheduler with flow sigmas (Sana's release scheduler config)
  components/dit-<name>/          the DiT (models/configs/dit_sana_<name>.json), bf16, 1 GB shards + index (diffusers names)
  pipelines/<pipeline>/           model_index.json + symlinks to the components above (diffusers and `sana convert` read it)
  bundles/<pipeline>-<type>.sana  `sana convert` output per storage type (--bundles puts them elsewhere, e.g. to
                                  convert with a newer build next to the old bundles; --reconvert redoes existing ones)

Weights are never materialized as a whole model: each model is built on the meta device for its state-dict names,
shapes and dtypes, then tensors are drawn one at a time in bf16 and written shard by shard, so peak memory stays near one
shard (1 GB) plus the largest tensor (Gemma's embedding, 1.18 GB). Values: N(0, 1/fan_in) for matrices and kernels,
norm weights near 1 (Gemma's (1 + w) convention: w near 0), small nonzero biases, positive batch-norm variances; the
values do not change speed or memory, only keep activations finite. Deterministic (fixed seed per component).
Rerunning skips components whose directory is complete (a `.done` marker); --force rebuilds.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time

import torch
from safetensors.torch import save_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONFIGS = os.path.join(ROOT, "models", "configs")
SHARD_BYTES = 1 << 30
VOCAB = 256000

# pipeline name → (DiT config file, benchmark size)
PIPELINES = {
    "sana-0.6b-512": "dit_sana_600m_512px.json",
    "sana-1.6b-1024": "dit_sana_1600m_1024px.json",
}
MODEL_SETS = {"small": ["sana-0.6b-512"], "full": ["sana-1.6b-1024"], "all": list(PIPELINES)}
VAE_CONFIG = "dc-ae-f32c32-sana-1.0.json"
GEMMA_CONFIG = "gemma-2-2b.json"


def log(msg):
    print(f"[make_checkpoints {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fill(name, meta, gen, gemma):
    """One random tensor in the dtype of the meta tensor (bf16 for floats)."""
    shape = tuple(meta.shape)
    if not meta.dtype.is_floating_point:
        return torch.zeros(shape, dtype=meta.dtype)
    t = torch.empty(shape, dtype=torch.bfloat16)
    if name.endswith("running_var"):
        return t.uniform_(1.0, 1.2, generator=gen)
    if name.endswith("running_mean"):
        return t.normal_(0.0, 0.1, generator=gen)
    if t.dim() == 1:
        if "norm" in name and name.endswith("weight"):
            # Gemma's RMSNorm multiplies by (1 + w); the others by w.
            return t.normal_(0.0 if gemma else 1.0, 0.1, generator=gen)
        return t.normal_(0.0, 0.02, generator=gen)
    fan_in = math.prod(shape[1:])
    return t.normal_(0.0, 1.0 / math.sqrt(fan_in), generator=gen)


def write_sharded(meta_state, out_dir, stem, seed, gemma):
    """Writes the state dict as safetensors shards named like save_pretrained does (stem.safetensors, or
    stem-0000i-of-0000n.safetensors + stem.safetensors.index.json), drawing tensors one at a time."""
    names = list(meta_state)
    nbytes = {n: meta_state[n].numel() * (2 if meta_state[n].dtype.is_floating_point else meta_state[n].element_size())
              for n in names}
    shards, current, size = [], [], 0
    for n in names:
        if current and size + nbytes[n] > SHARD_BYTES:
            shards.append(current)
            current, size = [], 0
        current.append(n)
        size += nbytes[n]
    shards.append(current)
    gen = torch.Generator().manual_seed(seed)
    files = ([f"{stem}.safetensors"] if len(shards) == 1
             else [f"{stem}-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
    weight_map = {}
    for shard, fname in zip(shards, files):
        tensors = {n: fill(n, meta_state[n], gen, gemma) for n in shard}
        save_file(tensors, os.path.join(out_dir, fname), metadata={"format": "pt"})
        del tensors
        weight_map.update({n: fname for n in shard})
        log(f"  {os.path.basename(out_dir)}/{fname}: {len(shard)} tensors, {sum(nbytes[n] for n in shard) / 2**20:.0f} MiB")
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(nbytes.values())}, "weight_map": weight_map}
        with open(os.path.join(out_dir, f"{stem}.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)


def component(path, force):
    """True when the component at path must be (re)built; clears a partial one."""
    if os.path.exists(os.path.join(path, ".done")) and not force:
        log(f"{path}: present")
        return False
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return True


def done(path):
    open(os.path.join(path, ".done"), "w").close()


def build_gemma(path, force):
    from transformers import Gemma2Config, Gemma2Model

    if not component(path, force):
        return
    cfg = Gemma2Config.from_json_file(os.path.join(CONFIGS, GEMMA_CONFIG))
    with torch.device("meta"):
        model = Gemma2Model(cfg)
    cfg.save_pretrained(path)
    write_sharded(model.state_dict(), path, "model", seed=2, gemma=True)
    done(path)


def build_diffusers_model(cls, config_file, path, seed, force):
    if not component(path, force):
        return
    with open(os.path.join(CONFIGS, config_file)) as f:
        cfg = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    with torch.device("meta"):
        model = cls.from_config(cfg)
    model.save_config(path)
    write_sharded(model.state_dict(), path, "diffusion_pytorch_model", seed=seed, gemma=False)
    done(path)


def build_tokenizer(path, force):
    """The fixture tokenizer of make_gemma.py (trained on the complex human instruction, so the instruction tokenizes
    into roughly one token per word as with the real Gemma vocabulary), its BPE vocabulary padded with unreachable
    <unusedN> pieces to 256000 ids."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, GemmaTokenizer

    if not component(path, force):
        return
    sys.path.insert(0, os.path.join(ROOT, "tools", "fixtures"))
    import make_gemma

    raw = make_gemma.build_tokenizer(make_gemma.default_instruction())
    spec = json.loads(raw.to_str())
    vocab = spec["model"]["vocab"]
    # As in Gemma's tokenizer.json, every id is a vocabulary entry (added tokens included): ids are 0..<256000.
    for t in spec["added_tokens"]:
        vocab.setdefault(t["content"], t["id"])
    used = set(vocab.values())
    free = (i for i in range(VOCAB) if i not in used)
    for k, i in enumerate(free):
        vocab[f"<unused{k}>"] = i
    padded = Tokenizer.from_str(json.dumps(spec))
    tmp = os.path.join(path, "raw")
    os.makedirs(tmp)
    padded.save(os.path.join(tmp, "tokenizer.json"))
    GemmaTokenizer(tokenizer_file=os.path.join(tmp, "tokenizer.json"), add_bos_token=True, add_eos_token=False,
                   padding_side="right").save_pretrained(path)
    shutil.rmtree(tmp)
    for extra in ("special_tokens_map.json", "chat_template.jinja"):
        if os.path.exists(os.path.join(path, extra)):
            os.remove(os.path.join(path, extra))
    n = len(AutoTokenizer.from_pretrained(path))
    ids = sorted(json.load(open(os.path.join(path, "tokenizer.json")))["model"]["vocab"].values())
    if n != VOCAB or ids != list(range(VOCAB)):
        raise SystemExit(f"tokenizer has {n} entries (vocabulary ids not 0..<{VOCAB}?), expected {VOCAB}")
    done(path)


def build_scheduler(path, force):
    from diffusers import DPMSolverMultistepScheduler

    if not component(path, force):
        return
    # Sana's release scheduler config (as in tools/fixtures/make_tiny_pipeline.py).
    DPMSolverMultistepScheduler(
        use_flow_sigmas=True, flow_shift=3.0, prediction_type="flow_prediction", solver_order=2,
        algorithm_type="dpmsolver++", beta_schedule="linear", beta_start=0.0001, beta_end=0.02,
    ).save_pretrained(path)
    done(path)


def assemble(cache, name):
    """pipelines/<name>/: model_index.json and one symlink per component (relative, so the cache can move)."""
    out = os.path.join(cache, "pipelines", name)
    os.makedirs(out, exist_ok=True)
    links = {"text_encoder": "gemma-2-2b", "tokenizer": "tokenizer", "vae": "dc-ae-f32c32-sana-1.0",
             "scheduler": "scheduler", "transformer": f"dit-{name}"}
    for sub, comp in links.items():
        link = os.path.join(out, sub)
        if os.path.islink(link) or os.path.exists(link):
            os.remove(link)
        os.symlink(os.path.join("..", "..", "components", comp), link)
    index = {"_class_name": "SanaPipeline", "_diffusers_version": __import__("diffusers").__version__,
             "scheduler": ["diffusers", "DPMSolverMultistepScheduler"], "text_encoder": ["transformers", "Gemma2Model"],
             "tokenizer": ["transformers", "GemmaTokenizer"], "transformer": ["diffusers", "SanaTransformer2DModel"],
             "vae": ["diffusers", "AutoencoderDC"]}
    with open(os.path.join(out, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)
    return out


def build_pipelines(cache, names, force):
    from diffusers import AutoencoderDC, SanaTransformer2DModel

    comps = os.path.join(cache, "components")
    os.makedirs(comps, exist_ok=True)
    build_scheduler(os.path.join(comps, "scheduler"), force)
    build_tokenizer(os.path.join(comps, "tokenizer"), force)
    build_diffusers_model(AutoencoderDC, VAE_CONFIG, os.path.join(comps, "dc-ae-f32c32-sana-1.0"), 3, force)
    build_gemma(os.path.join(comps, "gemma-2-2b"), force)
    out = {}
    for name in names:
        build_diffusers_model(SanaTransformer2DModel, PIPELINES[name], os.path.join(comps, f"dit-{name}"), 4, force)
        out[name] = assemble(cache, name)
    return out


def convert(bundles, sana, pipelines, types, force):
    os.makedirs(bundles, exist_ok=True)
    for name, src in pipelines.items():
        for t in types:
            dst = bundle_path(bundles, name, t)
            if os.path.exists(dst) and not force:
                log(f"{dst}: present")
                continue
            cmd = [sana, "convert", src, "--output", dst, "--weights", t]
            log(" ".join(cmd))
            t0 = time.time()
            subprocess.run(cmd, check=True)
            log(f"  {time.time() - t0:.0f} s, {os.path.getsize(dst) / 2**20:.0f} MiB")


def bundle_path(bundles, name, weights):
    return os.path.join(bundles, f"{name}-{weights}.sana")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default="/work/bench-cache", help="where checkpoints and bundles go (not in git)")
    ap.add_argument("--models", choices=sorted(MODEL_SETS), default="small")
    ap.add_argument("--convert", default="int4,int8,bf16", help="storage types to convert to ('' for none)")
    ap.add_argument("--sana", default=os.path.join(ROOT, ".build", "release", "sana"))
    ap.add_argument("--bundles", help="where the bundles go (default: CACHE/bundles)")
    ap.add_argument("--force", action="store_true", help="rebuild components and bundles that exist")
    ap.add_argument("--reconvert", action="store_true", help="redo the bundles that exist (keep the checkpoints)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    pipelines = build_pipelines(args.cache, MODEL_SETS[args.models], args.force)
    types = [t for t in args.convert.split(",") if t]
    if types:
        if not os.access(args.sana, os.X_OK):
            raise SystemExit(f"--sana {args.sana}: not an executable (swift build -c release first)")
        convert(args.bundles or os.path.join(args.cache, "bundles"), args.sana, pipelines, types,
                args.force or args.reconvert)


if __name__ == "__main__":
    main()
