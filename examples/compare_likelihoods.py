"""Observation models on continuous (dequantised) MNIST: test log p(x) in bits per dimension.

Trains every likelihood with each posterior for the same number of epochs, evaluates the test ELBO and
the importance-sampled log p(x) (nats of the 8-bit data, and bits per dimension), saves decoder
samples of each run as a PNG, and writes a Markdown table:

    python examples/compare_likelihoods.py --epochs 5 --iw-samples 100 --test-limit 1000 --out runs/lik
"""
import json
import math
from pathlib import Path

import numpy as np

from gvae.io.arguments import ArgumentParser
from gvae.io.mnist import load_mnist
from gvae.evaluation.evaluate import evaluate
from gvae.io.files import atomic_path, write_json
from gvae.model.posteriors import dense_factor
from gvae.plots.images import plot_image_grid
from gvae.plots.titles import run_title
from gvae.training import TrainConfig, Trainer
from gvae.training.batching import fixed_eval_sets
from gvae.training.runs import load_model

def precision_conditioning(model, params, decoded):
    """How far from singular the pixel precision P = L L^T of each decoded output is (float64, dense):
    the median and largest condition number, and the median standard deviation, in logits, along the
    direction of least precision (what a sample draws with eps ~ N(0, I) through L^-T)."""
    L = np.asarray(model.likelihood._factor(decoded, params), dtype=np.float64)
    conds, sds = [], []
    for Lb in L:
        Ld = dense_factor(Lb, model.likelihood.offsets)
        w = np.linalg.eigvalsh(Ld @ Ld.T)
        conds.append(w[-1] / w[0])
        sds.append(1 / math.sqrt(w[0]))
    return {"precision_condition_median": float(np.median(conds)), "precision_condition_max": float(np.max(conds)),
            "weakest_direction_sd_median": float(np.median(sds))}


parser = ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--likelihoods", nargs="+",
                    default=["gaussian", "logitnormal", "logitnormal-grid", "logitnormal-extgrid"])
parser.add_argument("--posteriors", nargs="+", default=["diagonal", "chain"])
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--hidden", type=int, default=500)
parser.add_argument("--iw-samples", type=int, default=100)
parser.add_argument("--test-limit", type=int, default=1000)
parser.add_argument("--out", default="runs/likelihoods")
args = parser.parse_args()

data = load_mnist()
out = Path(args.out)
rows = []
for lik in args.likelihoods:
    for post in args.posteriors:
        run = out / f"{lik}_{post}"
        if not (run / "eval.json").is_file():
            config = TrainConfig(posterior=post, likelihood=lik, latent=16, hidden=(args.hidden, args.hidden),
                                 activation="elu", epochs=args.epochs, batch_size=100, lr=1e-3)
            trainer = Trainer(config, data, run, quiet=True)
            summary = trainer.fit()
            model, params, _ = load_model(run)
            test_x = fixed_eval_sets(data, model)[1][:args.test_limit]
            _, means, seconds = evaluate(model, params, test_x, args.iw_samples, progress=False)
            n = model.n_in
            write_json(run / "eval.json", {
                "test_elbo": means["elbo"], "test_log_likelihood": means["log_likelihood"],
                "test_elbo_bits_per_dim": -means["elbo"] / (n * math.log(2)),
                "test_log_likelihood_bits_per_dim": -means["log_likelihood"] / (n * math.log(2)),
                "iw_samples": args.iw_samples, "n_test": len(test_x), "seconds": seconds,
                "seconds_per_epoch": summary["seconds_per_epoch"]})
            rng = np.random.default_rng(0)
            decoded = model.decode(params, rng.standard_normal((64, model.sizes[0])).astype(model.dtype))
            title = run_title(config.flat(), run)
            plot_image_grid(model.likelihood.sample(decoded, params, rng), run / "samples.png",
                            "samples x ~ p(x|z), z ~ N(0, I)", title)
            plot_image_grid(model.likelihood.mean(decoded, params), run / "means.png",
                            "decoder means (logit-normal: medians sigmoid(mu)), z ~ N(0, I)", title)
            if hasattr(model.likelihood, "offsets"):
                result = json.loads((run / "eval.json").read_text())
                result.update(precision_conditioning(model, params, decoded[:16]))
                write_json(run / "eval.json", result)
        result = json.loads((run / "eval.json").read_text())
        rows.append((lik, post, result))
        print(f"{lik:20s} {post:9s} log p(x) {result['test_log_likelihood']:9.1f} nats "
              f"{result['test_log_likelihood_bits_per_dim']:.4f} bits/dim", flush=True)

lines = [f"Continuous MNIST (uniform dequantisation, squashed into (1e-6, 1 - 1e-6)), latent 16, hidden "
         f"{args.hidden}-{args.hidden} ELU, {args.epochs} epochs, Adam 1e-3; test log p(x) with K = "
         f"{args.iw_samples} importance samples on {rows[0][2]['n_test']} test images, in nats of the 8-bit data "
         "and bits per dimension (lower is better).", "",
         "| likelihood | posterior | test ELBO (nats) | log p(x) (nats) | ELBO bits/dim | log p(x) bits/dim | s/epoch |",
         "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
for lik, post, r in rows:
    lines.append(f"| {lik} | {post} | {r['test_elbo']:.1f} | {r['test_log_likelihood']:.1f} | "
                 f"{r['test_elbo_bits_per_dim']:.4f} | {r['test_log_likelihood_bits_per_dim']:.4f} | "
                 f"{r['seconds_per_epoch']:.1f} |")
with atomic_path(out / "table.md") as tmp:
    tmp.write_text("\n".join(lines) + "\n")
print("\n".join(lines))
