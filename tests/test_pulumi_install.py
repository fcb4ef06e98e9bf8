"""`pulumi install` on a fresh clone: the virtualenv Pulumi.yaml names gets every dependency the program imports.

Pulumi's pip toolchain (Pulumi.yaml `toolchain: pip`) creates the `virtualenv` under the project root, then runs
`python -m pip install -r requirements.txt` with the *program* directory (`main`) as working directory, and
installs nothing when that file is missing (pulumi/pulumi sdk/python/toolchain/pip.go, InstallDependencies; the
language host passes ProgramDirectory, sdk/python/cmd/pulumi-language-python/main.go).
"""

import ast
import re
import sys
import tomllib
from importlib.metadata import distribution, packages_distributions
from pathlib import Path

import yaml
from packaging.requirements import Requirement

PROJECT_DIR = Path(__file__).resolve().parent.parent
FIRST_PARTY = {"infra", "stacks", "components", "serving", "policies"}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project() -> dict:
    return yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())


def program_dir() -> Path:
    return (PROJECT_DIR / project()["main"]).resolve()


def declared_dependencies() -> set[str]:
    pyproject = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())
    return {normalized(Requirement(spec).name) for spec in pyproject["project"]["dependencies"]}


def installed_with(names: set[str]) -> set[str]:
    """`names` and everything pip installs with them (their requirements, transitively, extras left out)."""
    found, pending = set(), list(names)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found.add(name)
        for spec in distribution(name).requires or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(normalized(requirement.name))
    return found


def module_file(module: str) -> Path | None:
    base = PROJECT_DIR.joinpath(*module.split("."))
    return next((path for path in (base.with_suffix(".py"), base / "__init__.py") if path.is_file()), None)


def imported_modules(path: Path) -> set[str]:
    """Modules a file imports (absolute imports; `from a import b` also names `a.b`, which may be a module)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return modules


def imported_distributions() -> set[str]:
    """Distributions of every third-party module the program imports: followed from infra/__main__.py through
    first-party modules (and their parent packages), so CLI-only tooling with its own extra is not counted."""
    seen: set[str] = set()
    third_party: set[str] = set()
    pending = ["infra.__main__"]
    while pending:
        module = pending.pop()
        top = module.split(".")[0]
        if top not in FIRST_PARTY:
            third_party.add(top)
            continue
        parts = module.split(".")
        for parent in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):
            path = module_file(parent)
            if path and parent not in seen:
                seen.add(parent)
                pending.extend(imported_modules(path))
    third_party -= set(sys.stdlib_module_names)
    distributions = packages_distributions()
    return {normalized(distributions[module][0]) for module in third_party}


def test_pulumi_yaml_uses_pip_and_the_project_virtualenv() -> None:
    runtime = project()["runtime"]
    assert runtime["name"] == "python"
    assert runtime["options"] == {"toolchain": "pip", "virtualenv": ".venv"}


def test_requirements_in_the_program_directory_install_the_project() -> None:
    requirements = program_dir() / "requirements.txt"
    assert requirements.is_file(), f"pulumi install reads {requirements}"
    lines = [line.strip() for line in requirements.read_text().splitlines() if line.strip()[:1] not in ("", "#")]
    # pip resolves a local path in a requirements file against its working directory: the program directory.
    targets = [(program_dir() / line.removeprefix("-e").strip()).resolve() for line in lines]
    assert targets == [PROJECT_DIR], "one line, the project itself: pyproject.toml stays the one dependency list"


def test_the_project_installs_everything_the_program_imports() -> None:
    imported = imported_distributions()
    assert {"pulumi", "pulumi-aws", "pulumi-eks", "pulumi-kubernetes", "pydantic"} <= imported
    missing = imported - installed_with(declared_dependencies())
    assert not missing, f"imported by the program, installed by no pyproject.toml [project].dependencies: {missing}"
