"""The torch and transformers versions the project supports, and what `make setup TORCH=system`
keeps from the system. The range is declared once, in pyproject.toml's dependencies, and read here
from emoneurons' installed metadata; nothing here imports torch or transformers (a wrong version is
one line before either is imported). Only the standard library and `packaging`: set-up runs this
before the lock is installed.

`python -m emoneurons.model.versions` checks the installed torch and transformers (set-up runs it);
`... --system-lock LOCK CPU_LOCK` prints the lock lines a `TORCH=system` venv installs."""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from emoneurons.errors import EmoneuronsError

CHECKED = ("torch", "transformers")


class UnsupportedVersionError(EmoneuronsError, RuntimeError):
    """A torch or transformers outside the declared range, or missing: one line naming the package,
    the version found (and where) and the range."""


def supported_ranges() -> dict[str, SpecifierSet]:
    """The declared range of each checked package, from emoneurons' Requires-Dist (pyproject.toml)."""
    try:
        requires = importlib.metadata.requires("emoneurons") or []
    except importlib.metadata.PackageNotFoundError:
        raise UnsupportedVersionError("emoneurons is not installed, so its supported torch/transformers "
                                      "range is unknown; run `make setup`") from None
    ranges = {}
    for line in requires:
        requirement = Requirement(line)
        if requirement.name in CHECKED and requirement.marker is None:
            ranges[requirement.name] = requirement.specifier
    missing = [name for name in CHECKED if not ranges.get(name)]
    if missing:
        raise UnsupportedVersionError(f"pyproject.toml declares no version range for {', '.join(missing)} "
                                      "(e.g. \"torch>=2.11,<2.14\"); reinstall with `make setup`")
    return ranges


def shown(specifier: SpecifierSet) -> str:
    """`>=2.11,<2.14`: lower bound first (SpecifierSet's own str sorts the clauses as text)."""
    return ",".join(sorted(map(str, specifier), key=lambda clause: not clause.startswith(">")))


def in_range(version: str, specifier: SpecifierSet) -> bool:
    """Whether `version` is inside `specifier`. A pre-release or dev build counts as its release
    (NVIDIA's containers ship torch as e.g. 2.11.0a0+<commit>, which is 2.11's code); a local
    label (+cpu, +cu130) is ignored."""
    try:
        release = Version(version).base_version
    except InvalidVersion:
        return False
    return specifier.contains(release, prereleases=True)


def _where(name: str) -> str:
    """The folder a distribution was found in (a system's site-packages, a venv, PYTHONPATH)."""
    try:
        return str(Path(importlib.metadata.distribution(name).locate_file("")).resolve())
    except (importlib.metadata.PackageNotFoundError, OSError):
        return "?"


def found_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def range_problem(name: str, version: str | None, specifier: SpecifierSet, where: str = "") -> str | None:
    """The one-line message for `name` at `version` (None: not installed), or None when supported."""
    declared = f"emoneurons supports {name}{shown(specifier)} (pyproject.toml)"
    if version is None:
        return f"{name} is not installed; {declared}"
    if in_range(version, specifier):
        return None
    return f"unsupported {name} {version}{f' (in {where})' if where else ''}; {declared}"


def check_supported_versions(names: tuple[str, ...] = CHECKED) -> dict[str, str]:
    """Raise UnsupportedVersionError (one line) unless every package of `names` is installed in
    its declared range; returns {name: version found}."""
    ranges = supported_ranges()
    found = {}
    for name in names:
        version = found_version(name)
        problem = range_problem(name, version, ranges[name], _where(name) if version else "")
        if problem:
            raise UnsupportedVersionError(problem)
        found[name] = version
    return found


def locked_pins(lock_text: str) -> dict[str, tuple[str, str]]:
    """{canonical name: (version, requirement line)} of a lock written by `uv pip compile`
    (a requirement per line, `# via` annotations as comment lines)."""
    pins = {}
    for line in lock_text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier  # `uv pip compile` writes exactly one `==` per line
        pins[canonicalize_name(requirement.name)] = (specifier.version, line)
    return pins


@dataclass(frozen=True)
class SystemDist:
    version: str
    requires: tuple[str, ...]  # Requires-Dist lines
    where: str = ""


def system_plan(lock: dict[str, tuple[str, str]], cpu_lock: dict[str, tuple[str, str]],
                system: dict[str, SystemDist], ranges: dict[str, SpecifierSet],
                environment: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """What a venv on the system's torch installs from the lock, and what it keeps from the system.

    torch must be on the system and in range; transformers is kept when the system has one, which
    must be in range too (else the lock's). Not installed: torch, the packages only the CUDA build
    of torch needs (in the lock, not in the CPU lock: nvidia-*, cuda-*, triton; the system's torch
    brings its own), transformers when kept, and any requirement of a kept package that the lock's
    version would break (e.g. transformers 5.17 needs huggingface-hub<2): the system's copy is kept,
    and a system without one is an error. Returns (lock lines to install, names kept from the
    system); raises UnsupportedVersionError (one line)."""
    system = {canonicalize_name(name): dist for name, dist in system.items()}
    torch = system.get("torch")
    if torch is None:
        raise UnsupportedVersionError("TORCH=system: this Python has no torch; load the cluster's torch "
                                      "(e.g. its module) first, or run `make setup` for the lock's torch")
    kept = ["torch"] + (["transformers"] if "transformers" in system else [])
    for name in kept:
        problem = range_problem(name, system[name].version, ranges[name], system[name].where)
        if problem:
            raise UnsupportedVersionError(f"TORCH=system: {problem}")
    cuda_only = set(lock) - set(cpu_lock)
    env = {"extra": "", **(environment or {})}
    for name in list(kept):
        for line in system[name].requires:
            requirement = Requirement(line)
            needed = canonicalize_name(requirement.name)
            if requirement.marker is not None and not requirement.marker.evaluate(env):
                continue
            if needed not in lock or needed in cuda_only or needed in kept:
                continue
            if requirement.specifier.contains(lock[needed][0], prereleases=True):
                continue  # the lock's version serves the system's package too
            if needed not in system:
                raise UnsupportedVersionError(
                    f"TORCH=system: the system's {name} {system[name].version} needs {requirement}, the lock "
                    f"has {needed}=={lock[needed][0]} and the system has none; install one in its range there")
            kept.append(needed)
    dropped = set(kept) | cuda_only
    return [line for name, (_, line) in lock.items() if name not in dropped], kept


def installed_dists(names: set[str]) -> dict[str, SystemDist]:
    """The distributions of `names` this interpreter sees (system site-packages, PYTHONPATH, venv)."""
    found = {}
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"] or "")
        if name in names and name not in found:  # the first on sys.path is the one imported
            found[name] = SystemDist(dist.version, tuple(dist.requires or ()), _where(dist.metadata["Name"]))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emoneurons.model.versions", description=__doc__)
    parser.add_argument("--system-lock", nargs=2, metavar=("LOCK", "CPU_LOCK"),
                        help="print the LOCK lines a venv on the system's torch installs")
    args = parser.parse_args(argv)
    try:
        if args.system_lock:
            lock, cpu_lock = (locked_pins(Path(path).read_text()) for path in args.system_lock)
            lines, kept = system_plan(lock, cpu_lock, installed_dists(set(lock)), supported_ranges())
            system = installed_dists(set(kept))
            print("TORCH=system: keeping from the system " + ", ".join(
                f"{name} {system[name].version} ({system[name].where})" for name in kept), file=sys.stderr)
            print("\n".join(lines))
        else:
            found = check_supported_versions()
            ranges = supported_ranges()
            print(", ".join(f"{name} {version} (supported: {shown(ranges[name])})" for name, version in found.items()))
    except UnsupportedVersionError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
