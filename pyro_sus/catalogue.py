"""The built-in registries read from the source, without importing it: ``pyro-sus models`` lists
every registered model, posterior family and latent prior in a fraction of a second (importing
them loads torch and Pyro). Each entry is the name its decorator registers and the first line of
its docstring, the same text the imported registry shows; a test checks the two agree.
"""

from __future__ import annotations

import ast
from pathlib import Path

__all__ = ["SECTIONS", "catalogue"]

PACKAGE = Path(__file__).resolve().parent

#: (title, decorator, source files) per registry, as ``pyro-sus models`` prints them.
SECTIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("models (--model)", "register_model", tuple(sorted(str(p.relative_to(PACKAGE))
                                                       for p in (PACKAGE / "models").glob("*.py")))),
    ("posteriors for z (--posterior)", "register_posterior", ("posteriors.py",)),
    ("latent priors (--latent-prior)", "register_latent_prior", ("priors.py",)),
)


def _registered(path: Path, decorator: str) -> dict[str, str]:
    """name -> first docstring line of each class or function in ``path`` decorated ``@decorator("name")``."""
    found = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            continue
        for call in node.decorator_list:
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == decorator
                    and call.args and isinstance(call.args[0], ast.Constant)):
                found[call.args[0].value] = ((ast.get_docstring(node) or "").strip().splitlines() or [""])[0]
    return found


def catalogue() -> list[tuple[str, dict[str, str]]]:
    """Per registry, its title and name -> one-line description of every built-in entry."""
    return [(title, {name: text for source in sources for name, text in _registered(PACKAGE / source,
                                                                                    decorator).items()})
            for title, decorator, sources in SECTIONS]
