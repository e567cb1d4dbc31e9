"""What a command will hold in memory, estimated before it allocates, against what the machine has.

A size given on the command line (``--latent``, ``--hidden``, ``--iw-samples``, ``--n``, ...) can ask for
more memory than any machine holds; NumPy would then fail deep inside the work with an allocation error,
or the kernel would end the process. Each command adds up its largest arrays from the sizes alone
(nothing is allocated for the estimate) and is refused, naming the flags, when they exceed the memory the
machine has available. The estimates count the arrays that grow with the flags, with a margin for the
copies the work makes; they are not a profile."""
import math

from ..io.archive import physical_memory
from .captured_step import MAX_RECORDS

GIB = 2 ** 30


class TooMuchMemory(ValueError):
    """A command whose arrays would not fit in the memory the machine has (the message names the flags)."""


def available_bytes():
    """The memory the machine can give this process now: MemAvailable of /proc/meminfo (Linux), else the
    physical memory; None when neither can be read (then nothing is refused)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return physical_memory()


def require(parts, advice, available=None):
    """Refuse (:class:`TooMuchMemory`) when the byte counts of ``parts`` ({what: bytes}) add up to more than
    ``available`` (default: :func:`available_bytes`); the message lists the parts, largest first (each key
    a text with ``{}`` where its size goes), and ``advice`` (which flags to lower)."""
    available = available_bytes() if available is None else available
    needed = sum(parts.values())
    if available is None or needed <= available:
        return needed
    listed = ", ".join(f"{what.format(_size(n))}" for what, n in sorted(parts.items(), key=lambda p: -p[1]) if n)
    raise TooMuchMemory(f"this needs about {_size(needed)} of memory, more than the {_size(available)} the "
                        f"machine has available: {listed}; {advice}")


def _size(n):
    """Bytes in the unit that reads best (3 significant digits)."""
    for unit, scale in (("TiB", 2 ** 40), ("GiB", GIB), ("MiB", 2 ** 20)):
        if n >= scale / 10:
            return f"{n / scale:.3g} {unit}"
    return f"{n / 2 ** 10:.3g} KiB"


def parameter_count(model):
    """Entries of the model's flat parameter buffer (from its shapes, nothing allocated)."""
    return sum(math.prod(shape) for shape in model.param_shapes().values())


def activation_width(model):
    """Entries one sample of one data point holds in a forward pass: every layer width of every network of
    the model (``model.networks()``: the hidden layers, the heads, the decoder outputs) and the latent
    draws."""
    return sum(sum(net.sizes) for net in model.networks()) + model.noise_size


def masked_count(model):
    """Entries of the weights a pass multiplies by a mask of their shape (``model.masked_weights()``, DARN's
    autoregressive d x d weights; none for a model without the method)."""
    shapes = model.param_shapes()
    return sum(math.prod(shapes[name]) for name in getattr(model, "masked_weights", tuple)())


def check_training(model, batch_size, iw_samples, n_train, recorded=False):
    """Refuse a training run whose arrays cannot fit: the parameters with their gradient, best copy,
    Adam's two moments and the checkpoint's copy (6 buffers), the masks of masked weights with what a step
    makes of them (the mask made in float64 and its copy, the masked weights, their gradient and the
    product's: 6 arrays of the weights' size), one step's activations kept for the backward pass with their
    gradients (batch x samples x widths, 4 arrays each) and the training images; with ``recorded`` (a device
    with a capture: :mod:`.captured_step`) as many activations again for each record the step may keep."""
    item = model.dtype.itemsize
    activations = 4 * batch_size * iw_samples * activation_width(model) * item
    parts = {"parameters with their gradient and Adam state {} (--latent, --hidden)": 6 * parameter_count(model) * item,
             "the autoregressive weights' masks and masked copies {} (--latent squared)": 6 * masked_count(model) * item,
             "one step's activations {} (--batch-size x --samples x --iw-samples x the layer widths)": activations,
             "training images {}": n_train * model.n_in * item}
    if recorded:  # up to MAX_RECORDS records of the step, one per way its products' decisions came out
        parts["the captured step's records of them {} (the same flags)"] = MAX_RECORDS * activations
    return require(parts, "lower the flags named")


def check_importance_sampling(model, batch_size, iw_samples, pass_bytes, n_points=0):
    """Refuse an evaluation whose arrays cannot fit: the float64 log-weights of one batch (K x batch, held
    whole for the log-mean-exp), one decoder pass (``pass_bytes``, bounded by --memory-mb) and the
    per-image results of ``n_points`` images (a few float64 values each)."""
    parts = {"the log-weights of a batch {} (--iw-samples x --batch-size, float64)": 2 * iw_samples * batch_size * 8,
             "one decoder pass {} (--memory-mb)": pass_bytes,
             "parameters {}": 2 * parameter_count(model) * model.dtype.itemsize,
             "per-image results {}": 8 * 8 * n_points}
    return require(parts, "lower --iw-samples or --batch-size")


def check_sampling(model, n):
    """Refuse ``gvae sample --n N`` whose draws cannot fit: the decoder's activations for N draws (3
    arrays per layer), the means and samples in float64 for the picture, and the tiled image."""
    item = model.dtype.itemsize
    parts = {"decoder activations {} (--n x the layer widths)": 3 * n * activation_width(model) * item,
             "images {} (--n x pixels)": 4 * n * model.n_in * 8,
             "parameters {}": parameter_count(model) * item}
    return require(parts, "lower --n")
