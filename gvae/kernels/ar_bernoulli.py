"""Draws of an autoregressive layer of binary units (DARN's, Gregor et al. 2014): unit i is on with
probability sigmoid(bias_i + sum_{j < i} W_ij z_j), so each draw needs the ones before it (a sequential
kernel; the layer's log-probability at given draws is one masked product, no kernel)."""
from . import ar_bernoulli_cpu  # noqa: F401  (registers the CPU kernel)
from .backend import array_module, implementation
from .checks import float_array, same_dtype


def ar_bernoulli_draw(bias, W, u):
    """z (..., d) in bias's dtype: z_i = [u_i < sigmoid(bias_i + sum_{j < i} W_ij z_j)] for logits' biases
    ``bias`` (..., d), weights W (d, d) (only the strictly lower triangle is read) and uniforms u on [0, 1)
    of bias's shape. The sum is accumulated in float64."""
    float_array("ar_bernoulli_draw bias", bias)
    float_array("ar_bernoulli_draw W", W, 2)
    float_array("ar_bernoulli_draw u", u)
    same_dtype("ar_bernoulli_draw", bias, W, u)
    d = bias.shape[-1]
    if W.shape != (d, d) or u.shape != bias.shape:
        raise ValueError(f"ar_bernoulli_draw: expected W ({d}, {d}) and u of bias's shape {bias.shape}, got W "
                         f"{W.shape} and u {u.shape}")
    xp = array_module(bias, W, u)
    b2 = xp.ascontiguousarray(bias.reshape(-1, d))
    z = xp.empty_like(b2)
    implementation("ar_bernoulli_draw", b2, W, u)(b2, xp.ascontiguousarray(W), xp.ascontiguousarray(u.reshape(-1, d)), z)
    return z.reshape(bias.shape)
