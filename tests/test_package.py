"""The package's shape: lazy top-level exports, no private name imported across modules, no import cycle, the
accelerate configs inside the package, and the CLI's line between user errors and bugs."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import recpipe
from recpipe.cli import main as cli

PACKAGE = Path(recpipe.__file__).parent


def module_imports() -> dict[str, set[str]]:
    """recpipe module -> the recpipe modules it imports (anywhere in the file, function-level imports included)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("recpipe"):
                targets |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("recpipe")}
        # importing a module imports the packages above it
        targets |= {".".join(t.split(".")[:i]) for t in set(targets) for i in range(2, t.count(".") + 1)}
        graph[name] = {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
    return graph


def test_top_level_exports_are_lazy():
    code = (
        "import sys, recpipe; assert 'torch' not in sys.modules, 'import recpipe loaded torch'; "
        "from recpipe import Recommender, RecTrainer, CTRTrainer, load_checkpoint; "
        "assert Recommender.__module__ == 'recpipe.recommender' and CTRTrainer.__module__ == 'recpipe.ctr.trainer'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError):
        recpipe.NoSuchName  # noqa: B018


def test_no_private_name_is_imported_from_another_module():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("recpipe"):
                offenders += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not offenders


def test_no_import_cycle():
    graph = module_imports()
    state: dict[str, str] = {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != "open", f"import cycle: {' -> '.join(stack + [node, nxt])}"
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_accelerate_configs_ship_inside_the_package():
    from recpipe.errors import InvalidInputError
    from recpipe.launch_config import accelerate_config, launch_options

    for gpus in (0, 1, 4):
        path = Path(launch_options(gpus)[1])
        assert path.is_file() and path.parent == PACKAGE / "accelerate_configs"
    assert accelerate_config("fsdp").is_file()
    with pytest.raises(InvalidInputError, match="choose one of"):
        accelerate_config("no-such-config")


def test_cli_prints_user_errors_and_keeps_tracebacks_of_bugs(tmp_path, capsys, monkeypatch):
    assert cli(["evaluate", "--checkpoint", str(tmp_path)]) == 2
    assert "is not a recpipe checkpoint" in capsys.readouterr().err

    def broken(ns):
        raise ValueError("a bug, not the user's fault")

    monkeypatch.setattr("recpipe.cli.cmd_report", broken)
    with pytest.raises(ValueError, match="a bug"):
        cli(["report", str(tmp_path)])
