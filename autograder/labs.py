"""The registry of labs: one topic name threads through every place.

``labs/NN_topic.ipynb`` is the lab; ``solutions/topic.py`` its reference;
``autograder/checks/test_topic.py`` its hidden checks;
``autograder/mutants/topic.py`` its seeded bugs. Adding a lab means adding
those four files; nothing here changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LABS_DIR = REPO / "labs"
CHECKS_DIR = Path(__file__).resolve().parent / "checks"

_LAB_NAME = re.compile(r"^(\d\d)_([a-z0-9_]+)$")


@dataclass(frozen=True)
class Lab:
    number: str  # "01"
    topic: str  # "preprocessing"

    @property
    def name(self) -> str:
        """The lab's name, as in its notebook's file name: ``01_preprocessing``."""
        return f"{self.number}_{self.topic}"

    @property
    def notebook(self) -> Path:
        return LABS_DIR / f"{self.name}.ipynb"

    @property
    def solution_module(self) -> str:
        return f"solutions.{self.topic}"

    @property
    def checks_file(self) -> Path:
        return CHECKS_DIR / f"test_{self.topic}.py"

    @property
    def mutants_module(self) -> str:
        return f"autograder.mutants.{self.topic}"


def all_labs() -> list[Lab]:
    """Every lab in ``labs/``, in order."""
    labs = []
    for path in sorted(LABS_DIR.glob("*.ipynb")):
        match = _LAB_NAME.match(path.stem)
        if match:
            labs.append(Lab(*match.groups()))
    return labs


def find_lab(name: str) -> Lab:
    """The lab called ``name``: its full name (``01_preprocessing``) or its topic.

    Raises KeyError with the list of labs when there is none.
    """
    for lab in all_labs():
        if name in (lab.name, lab.topic, lab.number):
            return lab
    known = ", ".join(lab.name for lab in all_labs())
    raise KeyError(f"No lab called {name!r}; the labs are: {known}.")


def lab_for_topic(topic: str) -> Lab | None:
    """The lab whose topic is ``topic``, or None."""
    return next((lab for lab in all_labs() if lab.topic == topic), None)
