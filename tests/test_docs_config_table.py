"""docs/reference/config.md is what tools/config_table.py renders from TrainConfig now: a field added,
renamed or given another default or help text in the code shows on the page once the tool is run again."""
import importlib.util
from pathlib import Path

from gvae.training.config import setting_fields

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("config_table", ROOT / "tools" / "config_table.py")
config_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(config_table)


def test_the_committed_page_is_the_code_s_table():
    assert config_table.PAGE.read_text() == config_table.render(), (
        "docs/reference/config.md is out of date with TrainConfig: run python tools/config_table.py and commit it")


def test_every_field_has_its_row_with_its_flag_and_default():
    page = config_table.render()
    for field in setting_fields().values():
        assert f"| `{field.name}` | `--{field.name.replace('_', '-')}`" in page, field.name
    assert "| `batch_size` | `--batch-size` B | `100` | positive integer | training images per Adam step |" in page
    assert "| `hidden` | `--hidden` H | `500 500` | one or more of: hidden width |" in page
