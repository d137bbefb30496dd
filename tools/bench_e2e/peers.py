#!/usr/bin/env python3
"""The peers of the end-to-end benchmark, one generation per process (run.py starts them; each prints one
`RESULT {json}` line on stdout).

    peers.py diffusers --pipeline DIR --dtype float32|bfloat16 --prompt P --width W --height H --steps N --seed S
    peers.py openvino  --ir DIR --pipeline DIR --prompt P --width W --height H --steps N --seed S
    peers.py ov-export --pipeline DIR --ir DIR[,DIR] --weights int8|int4[,int8|int4] --width W --height H
                       [--component NAME]   (several weights: one trace, compressed once per weights into its --ir)

diffusers: SanaPipeline on the CPU, the whole pipeline in one dtype, all cores (torch default).
openvino: optimum-intel 2.2.0 (the release that exports Sana as OVSanaPipeline) requires transformers < 5.6 and
huggingface-hub < 1.22 and fails to import with the reference environment's transformers 5.24 (ImportError in
modeling_visual_language), so this script does what its exporter does for Sana, with openvino and nncf directly:
each component is loaded in bf16 (the checkpoint's dtype), made traceable with OpenVINO's 16-bit patch (as optimum does
for 16-bit models), converted with openvino.convert_model (dynamic batch and sequence/spatial sizes), weight-compressed
with nncf.compress_weights using optimum-intel's defaults (int8: INT8_ASYM per channel; int4: INT4_ASYM, group 128,
ratio 1.0, nncf's default INT8_ASYM backup for embeddings; group-size fallback ADJUST for layers whose width 128 does
not divide), and saved as IR. At run time the three compiled models
(text_encoder, transformer, vae_decoder, all compiled at load as OVSanaPipeline does) stand in for the torch modules
of diffusers' SanaPipeline, so tokenization, scheduling and guidance are the same code as the diffusers peer.

Stage times: encode = SanaPipeline.encode_prompt (tokenizer + text encoder, prompt and negative); denoise = from the end
of encode_prompt to the start of vae.decode (latent preparation, every transformer call, scheduler steps); decode =
vae.decode; generate = the whole pipeline call; load = building the pipeline (reading weights, compiling).
"""

import argparse
import json
import os
import sys
import time

T_START = time.time()

import torch  # noqa: E402

COMPONENTS = ("text_encoder", "transformer", "vae_decoder")


class StageClock:
    """Wraps a pipeline's encode_prompt and vae.decode to time the three stages of one call."""

    def __init__(self, pipe):
        self.marks = {}
        self._wrap(pipe, "encode_prompt", "encode")
        self._wrap(pipe.vae, "decode", "decode")
        self.transformer_seconds = 0.0
        self.transformer_calls = 0
        pipe.transformer.register_forward_pre_hook(lambda *_: self.marks.__setitem__("t", time.time()))
        pipe.transformer.register_forward_hook(lambda *_: self._transformer_done())

    def _transformer_done(self):
        self.transformer_seconds += time.time() - self.marks["t"]
        self.transformer_calls += 1

    def _wrap(self, owner, method, stage):
        inner = getattr(owner, method)

        def timed(*args, **kwargs):
            self.marks[stage + "_start"] = time.time()
            out = inner(*args, **kwargs)
            self.marks[stage + "_end"] = time.time()
            return out

        setattr(owner, method, timed)

    def stages(self):
        m = self.marks
        return {"encode": m["encode_end"] - m["encode_start"], "denoise": m["decode_start"] - m["encode_end"],
                "decode": m["decode_end"] - m["decode_start"]}


def generate(pipe, args, extra):
    """One generation with the benchmark's settings; prints the RESULT line."""
    clock = StageClock(pipe)
    t_loaded = time.time()
    t0 = time.time()
    image = pipe(prompt=args.prompt, negative_prompt="", width=args.width, height=args.height,
                 num_inference_steps=args.steps, guidance_scale=4.5, use_resolution_binning=not args.no_binning,
                 generator=torch.Generator().manual_seed(args.seed)).images[0]
    t1 = time.time()
    if args.output:
        image.save(args.output)
    result = {"load": t_loaded - T_START, "generate": t1 - t0, **clock.stages(),
              "steps": clock.transformer_calls, "transformer_seconds": clock.transformer_seconds,
              "threads": torch.get_num_threads(), **extra}
    print("RESULT " + json.dumps(result), flush=True)


def run_diffusers(args):
    from diffusers import SanaPipeline

    dtype = getattr(torch, args.dtype)
    pipe = SanaPipeline.from_pretrained(args.pipeline, torch_dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        generate(pipe, args, {"dtype": args.dtype})


# ------------------------------------------------------------------------------------------------------------------
# OpenVINO


class OVComponent(torch.nn.Module):
    """A compiled OpenVINO model in place of a torch module of SanaPipeline: the pipeline reads .config, .dtype and
    .device and calls it like the module it replaces."""

    def __init__(self, compiled, config):
        super().__init__()
        from diffusers.configuration_utils import FrozenDict

        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.config = FrozenDict(config)

    @property
    def dtype(self):
        return torch.float32

    @property
    def device(self):
        return torch.device("cpu")

    def infer(self, *inputs):
        out = self.request.infer([x.numpy() for x in inputs], share_inputs=True)
        return torch.from_numpy(out[self.compiled.outputs[0]].copy())


class OVTextEncoder(OVComponent):
    def forward(self, input_ids, attention_mask=None):
        return (self.infer(input_ids, attention_mask),)


class OVTransformer(OVComponent):
    def forward(self, hidden_states, encoder_hidden_states=None, encoder_attention_mask=None, timestep=None,
                return_dict=False, attention_kwargs=None):
        return (self.infer(hidden_states.float(), encoder_hidden_states.float(), encoder_attention_mask.long(),
                           timestep.float()),)


class OVVaeDecoder(OVComponent):
    def forward(self, z):
        return self.decode(z)

    def decode(self, z, return_dict=False):
        return (self.infer(z.float()),)


def run_openvino(args):
    import openvino as ov
    from diffusers import DPMSolverMultistepScheduler, SanaPipeline
    from transformers import AutoTokenizer

    core = ov.Core()
    compiled = {c: core.compile_model(os.path.join(args.ir, c, "openvino_model.xml"), "CPU") for c in COMPONENTS}
    configs = {}
    for c, sub in (("text_encoder", "text_encoder"), ("transformer", "transformer"), ("vae_decoder", "vae")):
        with open(os.path.join(args.pipeline, sub, "config.json")) as f:
            configs[c] = json.load(f)
    pipe = SanaPipeline(
        tokenizer=AutoTokenizer.from_pretrained(os.path.join(args.pipeline, "tokenizer")),
        text_encoder=OVTextEncoder(compiled["text_encoder"], configs["text_encoder"]),
        transformer=OVTransformer(compiled["transformer"], configs["transformer"]),
        vae=OVVaeDecoder(compiled["vae_decoder"], configs["vae_decoder"]),
        scheduler=DPMSolverMultistepScheduler.from_pretrained(os.path.join(args.pipeline, "scheduler")),
    )
    pipe.set_progress_bar_config(disable=True)
    with open(os.path.join(args.ir, "export.json")) as f:
        export = json.load(f)
    hint = compiled["transformer"].get_property("INFERENCE_PRECISION_HINT")
    precision = hint.to_string() if hasattr(hint, "to_string") else str(hint)
    with torch.inference_mode():
        generate(pipe, args, {"weights": export["weights"], "openvino": ov.__version__,
                              "inference_precision": precision})


# ------------------------------------------------------------------------------------------------------------------
# Export (what optimum-intel's exporter does for Sana, see the module docstring)


class TextEncoderExport(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state


class TransformerExport(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, hidden_states, encoder_hidden_states, encoder_attention_mask, timestep):
        return self.model(hidden_states, encoder_hidden_states=encoder_hidden_states,
                          encoder_attention_mask=encoder_attention_mask, timestep=timestep, return_dict=False)[0]


class VaeDecoderExport(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, latent_sample):
        return self.model.decode(latent_sample, return_dict=False)[0]


def export_component(pipeline, component, targets, latent_hw):
    """Traces at the benchmark's latent size (latent_hw): shapes stay dynamic, but Python branches on sizes (DC-AE's
    linear-vs-quadratic attention choice) are taken at trace time, so the example must take the benchmark's branch.
    targets: [(weights, out_dir)]; the traced model is compressed once per target (a clone for all but the last)."""
    import nncf
    import openvino as ov
    from openvino.frontend.pytorch import patch_model

    make_16bit_traceable = patch_model.__dict__["__make_16bit_traceable"]
    bf16 = torch.bfloat16
    if component == "text_encoder":
        from transformers import Gemma2Model

        model = Gemma2Model.from_pretrained(os.path.join(pipeline, "text_encoder"), dtype=bf16,
                                            attn_implementation="eager")
        wrapper = TextEncoderExport(model)
        example = (torch.ones(1, 300, dtype=torch.long), torch.ones(1, 300, dtype=torch.long))
        inputs = [([-1, -1], ov.Type.i64), ([-1, -1], ov.Type.i64)]
    elif component == "transformer":
        from diffusers import SanaTransformer2DModel

        model = SanaTransformer2DModel.from_pretrained(os.path.join(pipeline, "transformer"), torch_dtype=bf16)
        c, cap = model.config.in_channels, model.config.caption_channels
        wrapper = TransformerExport(model)
        example = (torch.randn(2, c, *latent_hw), torch.randn(2, 300, cap), torch.ones(2, 300, dtype=torch.long),
                   torch.tensor([999.0, 999.0]))
        inputs = [([-1, c, -1, -1], ov.Type.f32), ([-1, -1, cap], ov.Type.f32), ([-1, -1], ov.Type.i64),
                  ([-1], ov.Type.f32)]
    else:
        from diffusers import AutoencoderDC

        model = AutoencoderDC.from_pretrained(os.path.join(pipeline, "vae"), torch_dtype=bf16)
        c = model.config.latent_channels
        wrapper = VaeDecoderExport(model)
        example = (torch.randn(1, c, *latent_hw),)
        inputs = [([-1, c, -1, -1], ov.Type.f32)]
    model.eval()
    make_16bit_traceable(wrapper)
    with torch.no_grad():
        ov_model = ov.convert_model(wrapper, example_input=example, input=inputs)
    del wrapper, model
    for i, (weights, out_dir) in enumerate(targets):
        t0 = time.time()
        traced = ov_model.clone() if i + 1 < len(targets) else ov_model
        if weights == "int8":
            compressed = nncf.compress_weights(traced, mode=nncf.CompressWeightsMode.INT8_ASYM)
        elif weights == "int4":
            # nncf's default fallback (ERROR) refuses group 128 where a layer's input width is not a multiple of it
            # (Sana-1.6B's 2240 and 5600); ADJUST gives those layers the largest power-of-two group that divides the
            # width (64 and 32), so every weight the 128-group rule covers is still 4-bit.
            compressed = nncf.compress_weights(
                traced, mode=nncf.CompressWeightsMode.INT4_ASYM, group_size=128, ratio=1.0,
                advanced_parameters=nncf.AdvancedCompressionParameters(
                    group_size_fallback_mode=nncf.GroupSizeFallbackMode.ADJUST))
        else:
            compressed = traced
        dst = os.path.join(out_dir, component)
        os.makedirs(dst, exist_ok=True)
        ov.save_model(compressed, os.path.join(dst, "openvino_model.xml"), compress_to_fp16=False)
        del traced, compressed
        print(f"  {component} {weights}: compressed and saved in {time.time() - t0:.0f} s", file=sys.stderr,
              flush=True)


def run_export(args):
    targets = list(zip(args.weights.split(","), args.ir.split(",")))
    if len(targets) != len(args.weights.split(",")) or len(targets) != len(args.ir.split(",")):
        raise SystemExit("--weights and --ir need as many comma-separated entries")
    for c in [args.component] if args.component else COMPONENTS:
        t0 = time.time()
        export_component(args.pipeline, c, targets, (args.height // 32, args.width // 32))
        print(f"exported {c} ({args.weights}) in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    for weights, ir in targets:
        write_export_json(ir, weights, [args.height, args.width], args.pipeline)


def write_export_json(ir, weights, traced_at, pipeline, shared=None):
    """export.json marks a complete IR set (all three components present); shared names components linked from
    another IR set (run.py --prepare)."""
    import nncf
    import openvino as ov

    if not all(os.path.exists(os.path.join(ir, c, "openvino_model.xml")) for c in COMPONENTS):
        return
    info = {"weights": weights, "openvino": ov.__version__, "nncf": nncf.__version__, "traced_at": traced_at,
            "pipeline": os.path.abspath(pipeline)}
    if shared:
        info["shared"] = shared
    with open(os.path.join(ir, "export.json"), "w") as f:
        json.dump(info, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("engine", choices=["diffusers", "openvino", "ov-export"])
    ap.add_argument("--pipeline", required=True)
    ap.add_argument("--ir")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--weights", default="int8")
    ap.add_argument("--component", choices=COMPONENTS)
    ap.add_argument("--prompt", default="a photo of an astronaut riding a horse on the moon")
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=512)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output")
    ap.add_argument("--no-binning", action="store_true", help="for the tiny test pipelines (sample sizes off the bins)")
    args = ap.parse_args()
    {"diffusers": run_diffusers, "openvino": run_openvino, "ov-export": run_export}[args.engine](args)


if __name__ == "__main__":
    main()
