"""The package's layers stand the right way up: a module imports only from its own unit or
from a lower layer. The rule, written once (and in the README's Development section):

    errors, files < model.architectures < config < model, data < weights < eval < report
        < train < transfer, experiments < the public API (vggnet/__init__) < cli

`model.architectures` is Table 1 as data; `config` sits on it because validating a config
means knowing the paper's names. `report` (one run's report) sits below `train` and
`experiments`, which both write reports.
"""

import ast
from pathlib import Path

import vggnet

PACKAGE = Path(vggnet.__file__).parent

LAYERS = [
    ["errors", "files"],
    ["model.architectures"],
    ["config"],
    ["model", "data"],
    ["weights"],
    ["eval"],
    ["report"],
    ["train"],
    ["transfer", "experiments"],
    [""],  # the package root: the public API (vggnet.build_model, ...)
    ["cli"],
    ["__main__"],
]


def unit_of(module: str) -> str:
    """The longest unit of LAYERS that ``module`` (dotted, without 'vggnet.') belongs to."""
    units = sorted((u for layer in LAYERS for u in layer if u), key=len, reverse=True)
    return next((u for u in units if module == u or module.startswith(u + ".")), "")


RANK = {unit: rank for rank, layer in enumerate(LAYERS) for unit in layer}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module without 'vggnet.') for every vggnet import in ``path``, lazy ones too."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name[len("vggnet."):]) for a in node.names if a.name.startswith("vggnet.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "vggnet":  # from vggnet import config / __version__
                for alias in node.names:
                    sub = PACKAGE / alias.name
                    is_module = sub.is_dir() or sub.with_suffix(".py").is_file()
                    out.append((node.lineno, alias.name if is_module else ""))
            elif node.module.startswith("vggnet."):
                out.append((node.lineno, node.module[len("vggnet."):]))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            out.append((node.lineno, "<relative>"))
    return out


def test_every_module_belongs_to_a_layer():
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        assert unit_of(name) in RANK, f"{name} is in no layer of LAYERS; add its package there"


def test_no_module_imports_a_higher_layer():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        mine = unit_of(source)
        for line, target in imports_of(path):
            assert target != "<relative>", f"{path.name}:{line}: use absolute imports (vggnet.x)"
            theirs = unit_of(target)
            if theirs != mine and RANK[theirs] >= RANK[mine]:
                upward.append(f"vggnet.{source}:{line} imports vggnet.{target} "
                              f"({theirs or 'the package root'} is not below {mine or 'the package root'})")
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_the_check_catches_an_upward_import(tmp_path):
    """The rule is live: an eval module importing the trainer is seen as an upward import."""
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from vggnet.train.trainer import fit\n    from vggnet import config\n")
    (_, train), (_, config) = imports_of(probe)
    assert RANK[unit_of(train)] > RANK[unit_of("eval.protocols")] > RANK[unit_of(config)]
