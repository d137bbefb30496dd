#!/usr/bin/env python3
"""Assembles the trained parts into a SanaPipeline and saves it in the diffusers layout, so `sana convert` takes it
like any Sana checkpoint.

    ${PYTHON:-.venv-ref/bin/python} tools/sana_shapes/export_pipeline.py [--out out/sana-shapes] [--dest models/sana-shapes]
    ${PYTHON:-.venv-ref/bin/python} tools/sana_shapes/export_pipeline.py --transformer out/sana-shapes/transformer-9000 --dest DIR

reads OUT/{tokenizer,text_encoder,vae,transformer}/ (train_autoencoder.py, train_dit.py; --transformer and --vae
take another checkpoint of either, e.g. a snapshot kept by train_dit.py --keep-every); writes DEST/ with
model_index.json and the scheduler Sana releases use (DPMSolverMultistepScheduler with flow sigmas), its flow_shift
set to 1.0: an 8×8 latent needs no shift towards high noise (Sana uses 3.0 at 1024², 64×64 latents).
"""
import argparse
import os
import shutil

from diffusers import AutoencoderDC, DPMSolverMultistepScheduler, SanaPipeline, SanaTransformer2DModel
from transformers import Gemma2Model, GemmaTokenizer


def scheduler():
    return DPMSolverMultistepScheduler(
        use_flow_sigmas=True, flow_shift=1.0, prediction_type="flow_prediction", solver_order=2,
        algorithm_type="dpmsolver++", beta_schedule="linear", beta_start=0.0001, beta_end=0.02,
    )


def load(out, transformer=None, vae=None):
    return SanaPipeline(
        tokenizer=GemmaTokenizer.from_pretrained(os.path.join(out, "tokenizer")),
        text_encoder=Gemma2Model.from_pretrained(os.path.join(out, "text_encoder")).eval(),
        vae=AutoencoderDC.from_pretrained(vae or os.path.join(out, "vae")).eval(),
        transformer=SanaTransformer2DModel.from_pretrained(transformer or os.path.join(out, "transformer")).eval(),
        scheduler=scheduler(),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="out/sana-shapes")
    ap.add_argument("--dest", default="models/sana-shapes")
    ap.add_argument("--transformer", help="the DiT directory (default OUT/transformer)")
    ap.add_argument("--vae", help="the autoencoder directory (default OUT/vae)")
    args = ap.parse_args()
    pipe = load(args.out, args.transformer, args.vae)
    shutil.rmtree(args.dest, ignore_errors=True)
    pipe.save_pretrained(args.dest, safe_serialization=True)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.dest) for f in fs)
    print(f"{args.dest}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
