"""The learning-rate schedule of the Sana-Shapes trainers: linear warm-up, constant, then (optionally) a decay to a
floor over a final phase that ends at the run's --steps.

A pure function of the step and the command line, so a resumed run continues the same schedule: nothing about it
is stored in the state files (only recorded in the reports).

Why a decay phase: trained at a constant rate the flow-matching DiT stopped improving (7,413 → 9,200 steps at 1e-3
did not raise held-out shape accuracy); its misses are soft corners and concave sides, details a constant rate keeps
stirring. Annealing the rate at the end (as warmup-stable-decay schedules do) lets the weights settle.
"""
import math

DECAYS = ("none", "cosine", "linear")


def add_arguments(ap, lr):
    ap.add_argument("--lr", type=float, default=lr, help="the constant rate, and where a decay starts from")
    ap.add_argument("--decay", choices=DECAYS, default="none",
                    help="decay the rate from --lr at --decay-start to --min-lr at --steps (needs --steps)")
    ap.add_argument("--decay-start", type=int, default=0, help="the step at which the decay begins")
    ap.add_argument("--min-lr", type=float, default=1e-5, help="the rate the decay ends at")


def check(ap, args):
    if args.decay != "none" and not (args.steps > args.decay_start >= 0):
        ap.error("--decay needs --steps (the end of the decay) greater than --decay-start")


def learning_rate(step, args, warmup=0):
    """The rate for the optimizer step that follows `step` completed steps."""
    rate = args.lr * min(1.0, (step + 1) / warmup) if warmup else args.lr
    if args.decay == "none" or step < args.decay_start:
        return rate
    t = min(1.0, (step - args.decay_start) / (args.steps - args.decay_start))  # 0 → 1 over the decay phase
    shape = 0.5 * (1 + math.cos(math.pi * t)) if args.decay == "cosine" else 1 - t
    return args.min_lr + (rate - args.min_lr) * shape


def describe(args):
    if args.decay == "none":
        return {"lr": args.lr}
    return {"lr": args.lr, "decay": args.decay, "decay_start": args.decay_start, "decay_end": args.steps,
            "min_lr": args.min_lr}
