"""DP-SGD on the digits: test accuracy against the epsilon spent (delta = 1e-5).

    python benchmarks/dp_digits.py [--epochs 20] [--lr 0.3] [--sigmas 0 0.7 1.0 2.0]

digits-cnn from its seeded random initialisation, SGD with momentum 0.9, per-example clipping
norm C = 1, Poisson sampling with expected batch 128 (q = 128 / 1347). sigma = 0 is the same
clipped training without noise (no privacy). Prints one row per noise multiplier.
"""

from __future__ import annotations

import argparse
import time

from tinyml_lab import zoo
from tinyml_lab.data import load_digits
from tinyml_lab.report import format_table
from tinyml_lab.train import SGD, evaluate
from tinyml_lab.train.dpsgd import dp_fit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.7, 1.0, 2.0])
    p.add_argument("--lr", type=float, default=0.3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    d = load_digits(16)
    q = args.batch / len(d.x_train)
    rows = []
    for sigma in args.sigmas:
        g = zoo.get("digits-cnn", weights="random", seed=args.seed)
        t0 = time.perf_counter()
        h = dp_fit(g, d.x_train, d.y_train, noise_multiplier=sigma, max_grad_norm=1.0, sampling_rate=q,
                   epochs=args.epochs, optimizer=SGD(lr=args.lr, momentum=0.9), seed=args.seed, delta=1e-5)
        acc = evaluate(g, d.x_test, d.y_test)["accuracy"]
        rows.append([f"{sigma:g}", h.last["steps"], f"{h.last['epsilon']:.2f}", f"{h.last['epsilon_classic']:.2f}",
                     f"{100 * acc:.1f}", f"{time.perf_counter() - t0:.0f}"])
        print(rows[-1], flush=True)
    print(f"digits-cnn, {len(d.x_train)} training images, q = {q:.4f}, C = 1, {args.epochs} epochs, delta = 1e-5")
    print(format_table(["sigma", "steps", "epsilon", "epsilon (classic)", "test accuracy %", "seconds"], rows,
                       align="rrrrrr"))


if __name__ == "__main__":
    main()
