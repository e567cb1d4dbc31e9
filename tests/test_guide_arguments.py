"""The arguments gvae.numpyro's and gvae.pyro's AutoBandedNormal refuse, each in one line: bad stencils,
offsets and site lists when the guide is made, and sizes that do not fit the model when it first meets it
(the two-site model of tests/test_numpyro_guide.py and tests/test_pyro_guide.py: a 2-vector 'a' then a
3 x 4 field 'x')."""
import pytest

LIBRARIES = ["numpyro", "pyro"]
# Refused when the guide is made, and (BAD_SIZES) when it first meets the model: (arguments, the
# error's pattern).
BAD_ARGUMENTS = [
    (dict(stencil="ring"), r"stencil must be 'chain', \('grid', rows, cols\)"),
    (dict(stencil=("grid", 3)), r"stencil must be"),
    (dict(stencil=("grid", 3, 1)), r"cols must be >= 2"),
    (dict(offsets=(1, 2)), r"offsets\[0\] must be 0"),
    (dict(offsets=(0, 1), stencil="chain"), r"give offsets or stencil, not both"),
    (dict(sites="x"), r"sites must be a non-empty list"),
    (dict(init_scale=0.0), r"init_scale must be > 0"),
]
BAD_SIZES = [
    (dict(stencil=("grid", 4, 4), sites=["x"]), r"a 4 x 4 lattice holds 16 coordinates, the sites \['x'\] have 12"),
    (dict(sites=["x", "b"]), r"sites \['b'\] are not latent sites of the model"),
    (dict(offsets=(0, 3), sites=["a"]), r"offsets \(0, 3\) reach 3 back, the sites \['a'\] have only 2"),
]


def make(library, **kwargs):
    """The library's AutoBandedNormal of the two-site model."""
    pytest.importorskip(library, reason=f"gvae.{library} needs {library} (pip install gvae[{library}])")
    if library == "numpyro":
        from gvae.numpyro import AutoBandedNormal

        from .test_numpyro_guide import two_sites
    else:
        from gvae.pyro import AutoBandedNormal

        from .test_pyro_guide import two_sites
    return AutoBandedNormal(two_sites(3, 4), **kwargs)


def first_call(library, guide):
    """The guide's first call, which meets the model."""
    if library == "numpyro":
        import numpyro
        with numpyro.handlers.seed(rng_seed=0):
            return guide()
    return guide()


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("kwargs, message", BAD_ARGUMENTS)
def test_bad_arguments_refused_in_one_line(library, kwargs, message):
    with pytest.raises(ValueError, match=message) as e:
        make(library, **kwargs)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("kwargs, message", BAD_SIZES)
def test_sizes_that_do_not_fit_the_model_refused_in_one_line(library, kwargs, message):
    guide = make(library, **kwargs)
    with pytest.raises(ValueError, match=message) as e:
        first_call(library, guide)
    assert "\n" not in str(e.value)
