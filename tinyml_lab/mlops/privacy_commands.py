"""CLI verbs of privacy and responsible AI: ``dp epsilon``, ``dp noise`` and ``card``.

    tinyml-lab dp epsilon --q 0.01 --sigma 4 --steps 10000 --delta 1e-5
    tinyml-lab dp noise --epsilon 3 --q 0.0043 --steps 14040 --delta 1e-5 --json
    tinyml-lab card digits-cnn -o card.md        # or card.html
"""

from __future__ import annotations

import argparse

from ..errors import TinyMLError
from ..report import format_table, print_json


def cmd_dp_epsilon(args: argparse.Namespace) -> None:
    from .accountant import epsilon

    spent = epsilon(args.q, args.sigma, args.steps, args.delta)
    out = {"q": spent.inputs["q"], "sigma": spent.inputs["sigma"], "steps": spent.inputs["steps"],
           "delta": spent.delta, "epsilon": spent.epsilon, "epsilon_classic": spent.epsilon_classic,
           "order": spent.order, "order_classic": spent.order_classic}
    if args.json:
        print_json(out)
        return
    print(f"{args.steps:,} steps of the sampled Gaussian mechanism, Poisson sampling rate q = {args.q:g}, "
          f"noise multiplier sigma = {args.sigma:g}, delta = {args.delta:g}")
    print(format_table(["conversion", "epsilon", "best order"],
                       [["improved (Canonne, Kamath, Steinke 2020)", f"{spent.epsilon:.4f}", f"{spent.order:g}"],
                        ["classic (Mironov 2017)", f"{spent.epsilon_classic:.4f}", f"{spent.order_classic:g}"]],
                       align="lrr"))


def cmd_dp_noise(args: argparse.Namespace) -> None:
    from .accountant import epsilon, noise_multiplier_for

    sigma = noise_multiplier_for(args.epsilon, args.q, args.steps, args.delta, classic=args.classic)
    spent = epsilon(args.q, sigma, args.steps, args.delta)
    out = {"target_epsilon": args.epsilon, "q": args.q, "steps": args.steps, "delta": args.delta,
           "conversion": "classic" if args.classic else "improved", "sigma": sigma, "epsilon": spent.epsilon,
           "epsilon_classic": spent.epsilon_classic}
    if args.json:
        print_json(out)
        return
    print(f"noise multiplier sigma = {sigma:.4f} gives epsilon {spent.epsilon:.4f} (improved), "
          f"{spent.epsilon_classic:.4f} (classic) for {args.steps:,} steps at q = {args.q:g}, delta = {args.delta:g}")


CARD_GROUPS = "capture condition (clean scans vs the same scans with sensor noise, sigma 0.2)"


def cmd_card(args: argparse.Namespace) -> None:
    import numpy as np

    from ..data import load_digits
    from ..data.digits import SIZES, apply_shift
    from ..files import check_file
    from ..models import load_model
    from .model_card import build_model_card

    target = check_file(args.output, "model card") if args.output else None
    g = load_model(args.model)
    shape = g.input_shape()
    if len(shape) != 3 or shape[0] != shape[1] or shape[2] != 1 or shape[0] not in SIZES:
        raise TinyMLError(f"the card evaluates on the digits (square grey images of {', '.join(map(str, SIZES))} "
                          f"pixels); '{g.name}' takes {'x'.join(map(str, shape))}")
    k = g.output_shape()[-1]
    if k > 10:
        raise TinyMLError(f"'{g.name}' has {k} outputs; the digits have 10 classes")
    d = load_digits(shape[0], classes=tuple(range(k)))
    noisy = apply_shift(d.x_test, "noise", 0.2, seed=args.seed)
    x = np.concatenate([d.x_test, noisy])
    y = np.concatenate([d.y_test, d.y_test])
    groups = ["clean"] * len(d.x_test) + ["sensor noise"] * len(d.x_test)
    card = build_model_card(
        g, x, y, name=args.name or g.name,
        intended_use=args.intended_use or "Teaching and benchmarking: classify 8x8 scans of handwritten digits, "
                                          "upscaled, on a microcontroller. Not for decisions about people.",
        training_data=args.training_data or ("scikit-learn's copy of the UCI optical digits (1,797 images), "
                                             "stratified 75/25 split, seed 0; see the model's recipe file."),
        evaluation_data=(f"the {len(d.x_test)} test images, clean and again with additive Gaussian sensor noise "
                         f"(seed {args.seed}): {len(y)} examples"),
        class_names=[str(c) for c in d.classes], groups=groups, group_attribute=CARD_GROUPS,
        caveats=["Digits written by 43 people in one study; other writers, pens and scanners are untested.",
                 "Accuracy on noisy captures is far lower than on clean ones: see the fairness section.",
                 "The int8 figures are for the model as deployed (BatchNorm folded, int8 weights)."])
    if target is not None:
        card.write(target, "html" if args.html else None)
    if args.json:
        print_json(dict(card.to_json(), written=str(target) if target else None))
        return
    if target is None:
        print(card.to_html() if args.html else card.to_markdown(), end="")
    else:
        m = card.metrics
        print(f"model card of {card.name} written to {target}: accuracy {100 * m['accuracy']:.1f}%, "
              f"int8 {100 * m['int8_accuracy']:.1f}%, worst class {100 * m['worst_slice_accuracy']:.1f}%")


def register(subparsers) -> None:
    s = subparsers.add_parser("dp", help="differential privacy of DP-SGD: epsilon spent, noise for a target",
                              description="The Rényi-DP accountant of the sampled Gaussian mechanism "
                                          "(assumes Poisson sampling with rate q).")
    verbs = s.add_subparsers(dest="dp_verb", required=True, metavar="ACTION")
    e = verbs.add_parser("epsilon", help="(epsilon, delta) of T steps at rate q and noise multiplier sigma")
    e.add_argument("--q", type=float, required=True, help="sampling rate in (0, 1]: expected batch / dataset size")
    e.add_argument("--sigma", type=float, required=True, help="noise multiplier (> 0): noise std / clipping norm")
    e.add_argument("--steps", type=int, required=True, help="number of steps (>= 1)")
    e.add_argument("--delta", type=float, default=1e-5, help="delta in (0, 1) (default 1e-5)")
    e.add_argument("--json", action="store_true", help="print JSON")
    e.set_defaults(func=cmd_dp_epsilon)
    n = verbs.add_parser("noise", help="the smallest noise multiplier reaching a target epsilon")
    n.add_argument("--epsilon", type=float, required=True, help="target epsilon (> 0)")
    n.add_argument("--q", type=float, required=True, help="sampling rate in (0, 1]")
    n.add_argument("--steps", type=int, required=True, help="number of steps (>= 1)")
    n.add_argument("--delta", type=float, default=1e-5, help="delta in (0, 1) (default 1e-5)")
    n.add_argument("--classic", action="store_true", help="target the classic conversion's epsilon")
    n.add_argument("--json", action="store_true", help="print JSON")
    n.set_defaults(func=cmd_dp_noise)

    c = subparsers.add_parser("card", help="a model card measured by the engine (Markdown or HTML)",
                              description="Evaluate a digits model (float and int8, per class, clean vs noisy "
                                          "captures) and write its model card.")
    c.add_argument("model", help="a zoo model name or a saved model file (digits-cnn or a model like it)")
    c.add_argument("-o", "--output", default=None, help="file to write (.md or .html); default: print it")
    c.add_argument("--html", action="store_true", help="HTML even without a .html suffix")
    c.add_argument("--name", default=None, help="the card's title (default: the model's name)")
    c.add_argument("--intended-use", default=None, help="the intended use, in words")
    c.add_argument("--training-data", default=None, help="the training data, in words")
    c.add_argument("--seed", type=int, default=0, help="seeds the sensor noise of the second group")
    c.add_argument("--json", action="store_true", help="print the card's data as JSON")
    c.set_defaults(func=cmd_card)
