"""A model is added as nothing but a folder: a package of gvae.models with its model, task and options,
found by gvae.models.register_folders, gets its --task choice and its flags, trains and writes its run.

The folder is written into a temporary directory put on gvae.models' path, as if dropped into
gvae/models/; no file of gvae is edited."""
import json
import sys
import textwrap

import pytest

import gvae.models
from gvae.cli import main
from gvae.training.tasks import TASKS
from tests.helpers import write_data

FILES = {
    "__init__.py": '''
        """A tiny model of a test: the VAE whose loss is its negative ELBO times --elbo-scale."""
        from . import task  # noqa: F401  (registers the task)
        ''',
    "model.py": '''
        """The loss of the tiny model: -scale * mean ELBO, reporting the bound, reconstruction and KL."""
        from gvae import ops
        from gvae.model.objectives import elbo_terms


        def scaled_loss(params, model, x, eps, scale):
            rec, kl = elbo_terms(model, params, x, eps)
            rec, kl = ops.mean(rec), ops.mean(kl)
            return -scale * (rec - kl), (rec - kl, rec, kl)
        ''',
    "options.py": '''
        """The tiny model's one setting."""
        import dataclasses

        from gvae.training.config import option, positive_float


        @dataclasses.dataclass
        class TinyOptions:
            elbo_scale: float = option(1.0, "tiny: the factor of the negative ELBO in the loss",
                                       parse=positive_float, metavar="F")
        ''',
    "task.py": '''
        """The task tiny: the images and step of a VAE and the ELBO's report (the task generate's pieces) with
        the scaled loss."""
        import functools

        from gvae.training.tasks import ElboReport, Settings, Task, images, register_task

        from .model import scaled_loss
        from .options import TinyOptions


        @register_task("tiny")
        class Tiny(Task):
            settings = Settings(about="a test's VAE with a scaled loss", Options=TinyOptions, binarizes=True)
            loss = staticmethod(scaled_loss)
            build_model = staticmethod(images.build_vae)
            inputs, on_device, batches = images.inputs, images.on_device, images.batches
            report = functools.cached_property(ElboReport)

            def step_args(self, batch, rng, kl_weight):
                (x,) = batch
                eps = rng.standard_normal((1, len(x), self.model.noise_size), dtype=self.model.dtype)
                return self.step_inputs(x=x, eps=eps, scale=self.config.options.elbo_scale)
        ''',
}


@pytest.fixture
def tiny_folder(tmp_path, monkeypatch):
    """The folder tiny written beside the built-in ones (a second entry of gvae.models' path) and
    registered; afterwards its task and modules are gone again."""
    root = tmp_path / "more_models"
    (root / "tiny").mkdir(parents=True)
    for name, text in FILES.items():
        (root / "tiny" / name).write_text(textwrap.dedent(text).lstrip())
    monkeypatch.setattr(gvae.models, "__path__", [*gvae.models.__path__, str(root)])
    yield gvae.models.register_folders(path=gvae.models.__path__)
    TASKS.pop("tiny", None)
    for name in [m for m in sys.modules if m.startswith("gvae.models.tiny")]:
        del sys.modules[name]


def test_a_folder_is_a_model_with_its_flag_and_trains(tiny_folder, tmp_path, capsys):
    assert tiny_folder[-1] == "tiny" and "vcca" in tiny_folder
    assert list(TASKS)[-1] == "tiny"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--elbo-scale F" in capsys.readouterr().out
    data = write_data(tmp_path / "data.npz", n=20)
    out = tmp_path / "run"
    assert main(["train", "--task", "tiny", "--elbo-scale", "2", "--latent", "2", "--hidden", "4", "--epochs", "1",
                 "--batch-size", "20", "--data", str(data), "--out", str(out), "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["task"] == "tiny" and config["elbo_scale"] == 2.0 and "private" not in config
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert row["epoch"] == 1 and row["skipped_steps"] == 0 and "valid_elbo" in row


def test_another_task_refuses_the_folder_s_flag(tiny_folder):
    assert main(["train", "--elbo-scale", "2", "--out", "unused"]) == 2
