"""docs/reference/api.md's promises held against the code: every function, class and method that the contract writes
as a call, `name(arg, ...)`, exists where the contract puts it and takes those arguments, in that order,
keyword-only where the contract says so (after `*`) and with the defaults it states; every parameter the
code requires is in the contract; every class or constant it names in a module exists there. Sections 2
(gvae.kernels), 6 (the modules' table), 7, 8 (gvae.torch) and 9 (gvae.jax)."""
import ast
import builtins
import importlib
import inspect
import re
from pathlib import Path

import pytest

API = Path(__file__).resolve().parents[1] / "docs" / "reference" / "api.md"
CALL = re.compile(r"`((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)\(([^`]*)\)`")
NAME = re.compile(r"`((?:[A-Za-z_]\w*\.)*(?:[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*|[A-Z][A-Z0-9_]+))`")  # Class, CONSTANT


def sections():
    """{section number: its text} of docs/reference/api.md."""
    parts = re.split(r"^## (\d+)\. .*$", API.read_text(), flags=re.M)
    return {int(n): text for n, text in zip(parts[1::2], parts[2::2])}


def split_args(text):
    """The documented arguments, split at the commas outside brackets and quotes."""
    args, depth, quote, current = [], 0, None, ""
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(current.strip())
            current = ""
            continue
        current += ch
    if current.strip():
        args.append(current.strip())
    return args


def resolve(dotted, bases):
    """The object ``dotted`` names: from the package down for a name that starts with ``gvae.``, else looked
    up on each base in turn (modules, then classes named nearby)."""
    if dotted.startswith("gvae."):
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            return resolve(".".join(parts[cut:]), [obj]) if parts[cut:] else obj
        return None
    for base in bases:
        obj = base
        for part in dotted.split("."):
            nxt = getattr(obj, part, None)
            if nxt is None and inspect.ismodule(obj):  # a submodule its package does not import
                try:
                    nxt = importlib.import_module(f"{obj.__name__}.{part}")
                except ImportError:
                    nxt = None
            if nxt is None:
                break
            obj = nxt
        else:
            return obj
    return None


def candidates(dotted, bases):
    """Every distinct object ``dotted`` names on some base (a module's function and a class's method may
    share a name)."""
    found = []
    for base in bases:
        obj = resolve(dotted, [base])
        if obj is not None and not any(obj is f for f in found):
            found.append(obj)
    return found


def check_call(where, dotted, documented, bases):
    """A list of what is wrong with the call ``dotted(documented)`` as the contract writes it: nothing when
    one of the objects the name reaches takes those arguments."""
    found = candidates(dotted, bases)
    if not found:
        return [f"{where}: `{dotted}` is not there (looked in {', '.join(getattr(b, '__name__', str(b)) for b in bases)})"]
    found = [obj for obj in found if (getattr(obj, "__module__", None) or "").startswith("gvae")]
    if not found:
        return []  # another library's (an example call such as `Independent(Normal, 1)`)
    problems = [_signature_problems(where, dotted, documented, obj) for obj in found]
    return [] if any(not p for p in problems) else problems[0]


def _signature_problems(where, dotted, documented, obj):
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return []  # a builtin or operator without a Python signature
    if params and params[0].name in ("self", "cls") and (inspect.isclass(obj) or inspect.isfunction(target)
                                                         and "." in target.__qualname__):
        params = params[1:]
    actual = {p.name: p for p in params}
    problems, order, keyword_only = [], [], False
    for arg in split_args(documented):
        if arg == "*":
            keyword_only = True
            continue
        if arg.startswith("*"):
            continue  # *args, **kwargs as the contract writes them
        name, _, default = arg.partition("=")
        name = name.strip()
        if not name.isidentifier():
            continue  # a value written in place of a name (an example call)
        p = actual.get(name)
        if p is None:
            if not any(q.kind == q.VAR_KEYWORD for q in params):
                problems.append(f"{where}: `{dotted}` has no parameter {name!r} (it takes {', '.join(actual)})")
            continue
        order.append(params.index(p))
        if keyword_only != (p.kind == p.KEYWORD_ONLY):
            problems.append(f"{where}: `{dotted}`'s {name!r} is {'not ' * (p.kind != p.KEYWORD_ONLY)}keyword-only, "
                            f"documented {'not ' * (not keyword_only)}so")
        if default:
            try:
                value = ast.literal_eval(default.strip())
            except (ValueError, SyntaxError):
                continue
            if value is Ellipsis:
                continue  # "device=...": the contract leaves the value to the text
            if p.default is inspect.Parameter.empty or p.default != value:
                problems.append(f"{where}: `{dotted}`'s {name!r} defaults to {p.default!r}, documented {default.strip()}")
    if order != sorted(order):
        problems.append(f"{where}: `{dotted}`'s parameters are documented in another order than the code's")
    documented_names = {a.partition("=")[0].strip() for a in split_args(documented)}
    if documented_names - {"*"} and all(n.isidentifier() for n in documented_names - {"*"}):
        for p in params:
            if (p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD,
                                                                    p.KEYWORD_ONLY) and p.name not in documented_names):
                problems.append(f"{where}: `{dotted}` requires {p.name!r}, which the contract does not give")
    return problems


def check_text(where, text, bases):
    """Every call and every Class or CONSTANT written in ``text``, resolved on ``bases`` (plus the classes
    the text names, for their methods)."""
    classes = [obj for name in NAME.findall(text) + [c for c, _ in CALL.findall(text)]
               if inspect.isclass(obj := resolve(name, bases))]
    # The modules those classes live in (a class's companions), and Python's own names (ValueError, None).
    bases = bases + [inspect.getmodule(c) for c in classes] + [builtins]
    problems = []
    for dotted, args in CALL.findall(text):
        if dotted.split(".")[0] in ("torch", "jax", "np", "q", "model", "family", "self"):
            continue  # another library's names, or a method on an instance the text describes
        problems += check_call(where, dotted, args, bases + classes)
    for name in NAME.findall(text):
        if name not in ("None", "True", "False") and resolve(name, bases + classes) is None and name.split(".")[0] not in ("torch", "jax", "PYTHONPATH"):
            problems.append(f"{where}: `{name}` is not there")
    return problems


def module(name):
    return importlib.import_module(name)


def test_section_2_the_kernels():
    text = sections()[2]
    assert check_text("section 2", text, [module("gvae.kernels")]) == []


def test_section_6_every_module_holds_what_the_table_says():
    """Each row's names in its module (or the package above it, for names written from there), then in
    the table's other modules (a row may name what another provides)."""
    rows = []
    for line in sections()[6].splitlines():
        if line.startswith("| `gvae"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            named = [resolve(n, []) for n in re.findall(r"`(gvae[\w.]*)`", cells[0])]
            rows.append((cells[0], [m for m in named if inspect.ismodule(m)], "|".join(cells[1:])))
    table = [m for _, mods, _ in rows for m in mods]
    problems = []
    for label, mods, text in rows:
        parents = [module(m.__name__.rsplit(".", 1)[0]) for m in mods if "." in m.__name__]
        problems += check_text(f"section 6, {label}", text, mods + parents + table)
    assert problems == []


def test_section_7_the_stochastic_layers():
    bases = [module(m) for m in ("gvae.model", "gvae.model.vae", "gvae.model.posteriors", "gvae")]
    assert check_text("section 7", sections()[7], bases) == []


def test_section_8_the_pytorch_front_end():
    pytest.importorskip("torch")
    import gvae.torch
    import torch.distributions
    assert check_text("section 8", sections()[8], [gvae.torch, module("gvae"), torch.distributions]) == []


def test_section_9_the_jax_front_end():
    pytest.importorskip("jax")
    import gvae.jax
    assert check_text("section 9", sections()[9], [gvae.jax, module("gvae")]) == []


def test_the_checker_finds_a_renamed_argument_a_missing_function_and_a_changed_default():
    """The checks themselves, on a contract that lies."""
    import gvae.kernels as k
    assert check_call("x", "band_solve_t", "L, offsets, rhs", [k])  # b is called rhs
    assert check_call("x", "band_solve_tt", "L, offsets, b", [k])   # no such function
    assert check_call("x", "band_solve_t", "L, offsets, b, check=False", [k])  # check defaults to True
    assert check_call("x", "band_solve_t", "L, offsets, b, check=True", [k])   # check is keyword-only, not said
    assert check_call("x", "band_solve_t", "offsets, L, b", [k])    # order
    assert check_call("x", "band_solve_t", "L, offsets", [k])       # b is required
    assert check_call("x", "band_solve_t", "L, offsets, b, *, check=True", [k]) == []
