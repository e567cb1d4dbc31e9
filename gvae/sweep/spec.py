"""A sweep's spec: a TOML file (read with the standard library's ``tomllib``) that names the sweep folder,
the seeds, the training configurations and the evaluation (docs/howto/sweeps.md).

    [sweep]    out (the sweep folder), seeds (a list), and optionally data, threads, device
    [base]     TrainConfig fields shared by every configuration
    [grid]     TrainConfig fields, each a list of values; the lists are crossed
    [[configs]] further configurations, each a name and TrainConfig fields over [base]
    [eval]     optional: gvae eval settings (iw_samples, limit, params, seed, batch_size, memory_mb)

Every value is checked by the parser of the command-line flag of the same name (``gvae train --latent``,
``gvae eval --iw-samples``, ...); a problem is a ValueError naming the file, the key and what was
expected. Relative paths in the file (``out``, ``data``) are relative to the file's folder."""
import dataclasses
import difflib
import itertools
import re
import tomllib
from pathlib import Path

from ..kernels.backend import device_names
from .. import models  # noqa: F401  (registers the literature models' tasks, whose options are settings too)
from ..training.config import TrainConfig, non_negative_int, positive_int, setting_fields

FIELDS = setting_fields()  # TrainConfig's fields and the tasks' options: every gvae train flag
TABLES = ("sweep", "base", "grid", "configs", "eval")
SWEEP_KEYS = ("out", "seeds", "data", "threads", "device")
# The flags of gvae eval that change its numbers (parser, or the allowed choices).
EVAL_KEYS = {"iw_samples": positive_int, "limit": positive_int, "params": ("best", "last"),
             "seed": non_negative_int, "batch_size": positive_int, "memory_mb": positive_int}
# A configuration's name is the name of its folder: no path separators, no leading dot, and not a name
# like those of the sweep folder's own files (sweep.toml, table.json, table.md, ...).
NAME = re.compile(r"(?![^/]*\.(json|md|toml)$)[A-Za-z0-9][A-Za-z0-9._+-]*")


class SpecError(ValueError):
    """A spec that cannot be used; the message names the file, the key and what was expected."""


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of a sweep: configuration ``name`` trained with ``seed`` into ``folder``."""
    name: str
    seed: int
    config: TrainConfig
    folder: Path

    @property
    def id(self):
        return f"{self.name}/seed-{self.seed}"


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A checked spec. ``configs`` maps each configuration's name to the settings that set it apart
    (its grid values, or the keys of its [[configs]] table); ``runs`` lists every run, seed by seed
    (each seed of every configuration before the next seed), so a sweep cut short has every
    configuration's first seeds."""
    file: Path
    text: str
    out: Path
    seeds: tuple
    data: Path
    threads: int
    device: str
    configs: dict
    eval: dict
    runs: tuple


def _fail(file, where, problem):
    raise SpecError(f"{file}: {where}: {problem}")


def _flag_value(parse, value):
    """One value converted as its command-line flag would convert its text: ``parse`` is a parser of
    text (raising ValueError) or a tuple of choices."""
    if isinstance(parse, tuple):
        if not isinstance(value, str) or value not in parse:
            raise ValueError(f"expected one of {', '.join(parse)}, got {value!r}")
        return value
    if isinstance(value, (list, dict)):
        raise ValueError(f"expected one value, got {value!r}")
    return parse(str(value))


def config_value(name, value):
    """The value of TrainConfig field ``name`` from a TOML value, checked as ``gvae train --NAME`` checks
    its text (a list for fields that take several values); ValueError saying what was expected."""
    meta = FIELDS[name].metadata
    parse = meta.get("parse") or tuple(meta["choices"])
    nargs = meta.get("nargs")
    if nargs is None:
        return _flag_value(parse, value)
    items = value if isinstance(value, list) else [value]
    if nargs == "+" and not items or isinstance(nargs, int) and len(items) != nargs:
        raise ValueError(f"expected {'one or more values' if nargs == '+' else f'{nargs} values'}, got {value!r}")
    return tuple(_flag_value(parse, item) for item in items)


def _unknown(file, where, key, known):
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    _fail(file, where, f"unknown key {key!r}{hint}; expected one of {', '.join(known)}")


def _check_key(file, where, key):
    """Refuse a key of table ``where`` that is no TrainConfig field a spec may set."""
    if key == "seed":
        _fail(file, f"{where} seed", "the seeds of a sweep are [sweep] seeds, a list")
    if key in ("task", "classes"):  # every run of a sweep is evaluated by gvae eval, a VAE's log p(x)
        _fail(file, f"{where} {key}", "a sweep trains and evaluates VAEs (task generate); train a classifier with "
                                      "gvae train --task classify")
    if key not in FIELDS:
        _unknown(file, where, key, [k for k in FIELDS if k not in ("seed", "task", "classes")])


def _setting(file, where, key, value):
    """The checked value of TrainConfig field ``key`` found in table ``where``."""
    _check_key(file, where, key)
    try:
        return config_value(key, value)
    except ValueError as e:
        _fail(file, f"{where} {key}", str(e))


def _settings(file, where, table):
    """{field: value} of a table of TrainConfig fields, each checked."""
    if not isinstance(table, dict):
        _fail(file, where, f"expected a table of training settings, got {table!r}")
    return {key: _setting(file, where, key, value) for key, value in table.items()}


def _value_text(value):
    """A grid value as part of a configuration's name: 500x500 for (500, 500)."""
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _grid(file, grid):
    """[(name, {field: value})] for the crossed lists of [grid], in the order of the file."""
    if not isinstance(grid, dict) or not grid:
        _fail(file, "[grid]", "expected a table of lists, e.g. posterior = [\"diagonal\", \"chain\"]; "
                              "leave [grid] out for [[configs]] only")
    lists = {}
    for key, values in grid.items():
        where = f"[grid] {key}"
        _check_key(file, "[grid]", key)
        if not isinstance(values, list) or not values:
            _fail(file, where, f"expected a non-empty list of values to cross, got {values!r}")
        converted = [_setting(file, "[grid]", key, v) for v in values]
        for i, v in enumerate(converted):
            if v in converted[:i]:
                nested = (f"; a value of {key} is itself a list: {key} = [[500, 500], [1000, 1000]]"
                          if FIELDS[key].metadata.get("nargs") else "")
                _fail(file, where, f"lists {_value_text(v)} twice{nested}")
        lists[key] = converted
    return [("_".join(_value_text(v) for v in combo), dict(zip(lists, combo)))
            for combo in itertools.product(*lists.values())]


def _extra_configs(file, configs):
    """[(name, {field: value})] of the [[configs]] tables."""
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        _fail(file, "configs", "expected an array of tables: write each as [[configs]] with a name and "
                               "training settings")
    out = []
    for i, table in enumerate(configs, 1):
        table = dict(table)
        name = table.pop("name", None)
        if not isinstance(name, str):
            _fail(file, f"[[configs]] #{i} name", f"expected the configuration's name (a string), got {name!r}")
        out.append((name, _settings(file, f"[[configs]] {name!r}", table)))
    return out


def _sweep_table(file, table, out):
    """out, seeds, data, threads, device of [sweep] (``out`` given: it replaces the file's)."""
    if not isinstance(table, dict):
        _fail(file, "[sweep]", "expected a table with out = \"FOLDER\" and seeds = [0, 1, ...]")
    for key in table:
        if key not in SWEEP_KEYS:
            _unknown(file, "[sweep]", key, list(SWEEP_KEYS))
    seeds = table.get("seeds")
    if not isinstance(seeds, list) or not seeds:
        _fail(file, "[sweep] seeds", f"expected a non-empty list of seeds, e.g. seeds = [0, 1], got {seeds!r}")
    try:
        seeds = tuple(_flag_value(non_negative_int, s) for s in seeds)
    except ValueError as e:
        _fail(file, "[sweep] seeds", str(e))
    for i, s in enumerate(seeds):
        if s in seeds[:i]:
            _fail(file, "[sweep] seeds", f"lists seed {s} twice")
    paths = {}
    for key in ("out", "data"):
        value = table.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            _fail(file, f"[sweep] {key}", f"expected a path (a non-empty string), got {value!r}")
        paths[key] = None if value is None else file.parent / Path(value).expanduser()
    if out is not None:
        paths["out"] = Path(out).expanduser()
    if paths["out"] is None:
        _fail(file, "[sweep] out", "the sweep folder is not given: set out = \"FOLDER\" or pass --out FOLDER")
    try:
        threads = _flag_value(positive_int, table.get("threads", 1))
    except ValueError as e:
        _fail(file, "[sweep] threads", str(e))
    try:
        device = _flag_value(device_names(), table.get("device", "cpu"))
    except ValueError as e:
        _fail(file, "[sweep] device", str(e))
    return paths["out"], seeds, paths["data"], threads, device


def _eval_table(file, table):
    if not isinstance(table, dict):
        _fail(file, "[eval]", f"expected a table of gvae eval settings, got {table!r}")
    out = {}
    for key, value in table.items():
        if key not in EVAL_KEYS:
            _unknown(file, "[eval]", key, list(EVAL_KEYS))
        try:
            out[key] = _flag_value(EVAL_KEYS[key], value)
        except ValueError as e:
            _fail(file, f"[eval] {key}", str(e))
    return out


def read_toml(file):
    """(text, the parsed table) of a TOML file; SpecError naming the file when it is not one."""
    file = Path(file)
    if file.is_dir():
        raise SpecError(f"{file} is a folder; expected a sweep spec file (TOML)")
    try:
        text = file.read_bytes().decode("utf-8")
        return text, tomllib.loads(text)
    except FileNotFoundError:
        raise SpecError(f"there is no sweep spec at {file}") from None
    except OSError as e:
        raise SpecError(f"cannot read the sweep spec {file}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{file} is not a TOML file (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{file} is not a valid TOML file: {e}") from None


def load_spec(file, out=None):
    """The checked :class:`Sweep` of a spec file; ``out`` (a path) replaces the file's [sweep] out."""
    file = Path(file)
    text, doc = read_toml(file)
    for key in doc:
        if key not in TABLES:
            _unknown(file, "the top level", key, ["[sweep]", "[base]", "[grid]", "[[configs]]", "[eval]"])
    if "sweep" not in doc:
        _fail(file, "[sweep]", "missing: the spec needs a [sweep] table with out = \"FOLDER\" and seeds = [0, 1, ...]")
    out, seeds, data, threads, device = _sweep_table(file, doc["sweep"], out)
    base = _settings(file, "[base]", doc.get("base", {}))
    named = (_grid(file, doc["grid"]) if "grid" in doc else []) + (
        _extra_configs(file, doc["configs"]) if "configs" in doc else [])
    if not named:
        _fail(file, "[grid]", "the spec describes no configuration: give a [grid] table of lists or "
                              "[[configs]] tables")
    for key in doc.get("grid", {}):
        if key in base:
            _fail(file, f"[grid] {key}", "is also set in [base]: set it in one of them")
    configs, built = {}, {}
    for name, settings in named:
        if not NAME.fullmatch(name):
            _fail(file, f"configuration {name!r}", "a name is a folder name: letters, digits and . _ + - "
                                                   "(not first), no spaces or slashes, not ending in .json, "
                                                   ".md or .toml")
        if name in configs:
            _fail(file, f"configuration {name!r}", "the name is given twice")
        try:
            config = TrainConfig.of(**{**base, **settings, "seed": seeds[0]})
        except ValueError as e:
            _fail(file, f"configuration {name!r}", str(e))
        same = next((other for other, c in built.items() if c == config), None)
        if same is not None:
            _fail(file, f"configuration {name!r}", f"has every setting of configuration {same!r}")
        configs[name], built[name] = settings, config
    evaluation = _eval_table(file, doc["eval"]) if "eval" in doc else None
    runs = tuple(Run(name, seed, dataclasses.replace(built[name], seed=seed), out / name / f"seed-{seed}")
                 for seed in seeds for name in configs)
    return Sweep(file, text, out, seeds, data, threads, device, configs, evaluation, runs)
