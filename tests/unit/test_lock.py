"""The install locks (pip constraints that scripts/install.sh and CI install from) stay inside pyproject's open
ranges: every requirement of the project and of the flavour's extras is pinned, to a version its range allows."""
import pytest
from helpers import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")

# The extras scripts/install.sh installs for each flavour (the flavour's own extra first).
FLAVOURS = {"cpu": ["cpu", "train", "app", "ray", "dev", "docs"], "gpu": ["gpu", "train", "app", "ray", "dev", "docs"]}
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def pins(flavour: str) -> dict[str, Version]:
    """The lock's `name==version` lines (comments aside), each an exact pin."""
    found = {}
    for number, line in enumerate((REPO / "requirements" / f"{flavour}.lock").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==" and not req.marker, f"{flavour}.lock:{number}: not an exact pin: {line}"
        found[canonicalize_name(req.name)] = Version(spec.version)
    return found


def requirements(extras: list[str]) -> list[Requirement]:
    """The project's requirements and the extras' own, for this platform (markers evaluated)."""
    lines = [*PROJECT["dependencies"], *(r for extra in extras for r in PROJECT["optional-dependencies"][extra])]
    return [req for req in map(Requirement, lines) if req.marker is None or req.marker.evaluate()]


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_the_lock_pins_every_requirement_inside_its_range(flavour):
    pinned = pins(flavour)
    for req in requirements(FLAVOURS[flavour]):
        name = canonicalize_name(req.name)
        assert name in pinned, f"{flavour}.lock has no pin for {req} (refresh it: bash scripts/lock.sh {flavour})"
        assert req.specifier.contains(pinned[name], prereleases=True), \
            f"{flavour}.lock pins {name}=={pinned[name]}, outside pyproject's {req}"


def test_the_import_linter_floor_has_every_contract_type_pyproject_uses():
    """import-linter gained `acyclic_siblings` in 2.6 and `private_modules` in 2.17: the floor is the later one."""
    used = {contract["type"] for contract in PYPROJECT["tool"]["importlinter"]["contracts"]}
    assert used <= {"layers", "forbidden", "independence", "protected", "acyclic_siblings", "private_modules"}
    (linter,) = [Requirement(r) for r in PROJECT["optional-dependencies"]["dev"] if r.startswith("import-linter")]
    assert not linter.specifier.contains("2.16") and linter.specifier.contains("2.17")
    assert pins("cpu")["import-linter"] >= Version("2.17")
