"""Train the AEVB VAE (diagonal Gaussian posterior, Bernoulli decoder) on MNIST from Python.

    python examples/train_mnist.py --epochs 10 --out runs/diagonal
"""
from gvae.io.arguments import ArgumentParser
from gvae.io.mnist import load_mnist
from gvae.training import TrainConfig, train

parser = ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--posterior", default="diagonal")
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--out", default="runs/mnist")
args = parser.parse_args()

config = TrainConfig(posterior=args.posterior, latent=16, hidden=(500, 500), activation="elu",
                     epochs=args.epochs, batch_size=100, lr=1e-3)
summary = train(config, load_mnist(), args.out)
print(f"test ELBO {summary['test_elbo']:.2f} nats, {summary['seconds_per_epoch']:.1f} s per epoch")
