"""Mutation testing of the reference solutions with mutmut 3 (``make mutation``).

For each lab, mutmut rewrites ``solutions/<topic>.py`` into many small variants
(mutants: ``+`` for ``-``, ``axis=1`` for ``axis=0``, ``None`` for a value, ...)
and runs the lab's hidden checks on each, in-process. A mutant the checks fail
is *killed*; one they pass *survived*: a promise of the docstring that no check
guards, unless the change cannot alter behaviour (an *equivalent* mutant).

The student is the mutant and the reference stays pristine: the checks run
with ``--reference-from`` (autograder/plugin.py), which loads the ``reference``
fixture from an untouched snapshot of the solution, while the in-process
``student`` is ``solutions.<topic>``, mutmut's mutated copy. Without it both
sides would be the same mutant and every comparison with the reference would
pass.

Every survivor is classified by hand in ``autograder/mutation/<topic>.toml``:
``[equivalent]`` (with a one-line reason) or ``[not_yet_killed]`` (an honest
to-do). Mutants are named there by a stable description, ``function: original
line -> mutated line``, never by mutmut's numbers, which change when the file
does. Each run writes ``autograder/mutation/<topic>.last-run.json`` (every
mutant's description and status); tests/test_mutation.py keeps the two
consistent.

    python -m autograder.mutation_testing [LAB ...] [--functions NAME ...] [--jobs N]
    python -m autograder.mutation_testing --table      # the committed last runs, no run
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

from autograder.labs import REPO, Lab, all_labs, find_lab

MUTATION_DIR = REPO / "autograder" / "mutation"
WORK_DIR = REPO / "build" / "mutation"

# mutmut's exit codes (mutmut.stats.status_by_exit_code), folded into the table's columns.
KILLED, SURVIVED, TIMEOUT, NO_TESTS, SUSPICIOUS = (
    "killed", "survived", "timeout", "no tests", "suspicious")
_STATUS = {1: KILLED, 3: KILLED, 0: SURVIVED, 5: NO_TESTS, 33: NO_TESTS, 36: TIMEOUT,
           24: TIMEOUT, -24: TIMEOUT, 152: TIMEOUT, 255: TIMEOUT}


def status_of(exit_code) -> str:
    return _STATUS.get(exit_code, SUSPICIOUS)  # segfaults, interrupted, not checked, ...


def classification_path(topic: str) -> Path:
    return MUTATION_DIR / f"{topic}.toml"


def results_path(topic: str) -> Path:
    return MUTATION_DIR / f"{topic}.last-run.json"


def load_classification(topic: str) -> dict[str, dict[str, str]]:
    """``{"equivalent": {description: reason}, "not_yet_killed": {description: reason}}``."""
    path = classification_path(topic)
    data = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    return {"equivalent": dict(data.get("equivalent", {})),
            "not_yet_killed": dict(data.get("not_yet_killed", {}))}


def load_results(topic: str) -> dict | None:
    path = results_path(topic)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


# --- the work folder that mutmut runs in ---------------------------------------------------


def mutmut_config(pristine: Path, tests: list[str]) -> str:
    """pyproject.toml of a work folder: mutmut mutates solutions/, runs the checks in tests/
    in-process, with the reference loaded from the pristine snapshot."""
    args = ["--transport", "inprocess", "--reference-from", str(pristine),
            "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning"]
    return "\n".join([
        "[tool.mutmut]",
        'source_paths = ["solutions/"]',
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
        f"pytest_add_cli_args = {json.dumps(args)}",
        "use_git_change_detection = false",
        "",
        "[tool.pytest.ini_options]",
        'addopts = ""',
        "",
    ])


def prepare(labs: list[Lab], work: Path, tests: list[str] | None = None) -> Path:
    """A fresh work folder: solutions/<topic>.py (to mutate), pristine/<topic>.py (the
    reference), tests/test_<topic>.py (the hidden checks), pyproject.toml (mutmut's config).

    The checks are copied so that pytest's rootdir is the work folder and ``solutions``
    resolves to mutmut's mutants/solutions, not to the repository's."""
    if work.exists():
        shutil.rmtree(work)
    for sub in ("solutions", "pristine", "tests"):
        (work / sub).mkdir(parents=True)
    (work / "solutions" / "__init__.py").write_text("")
    for lab in labs:
        source = REPO / "solutions" / f"{lab.topic}.py"
        shutil.copy2(source, work / "solutions" / source.name)
        shutil.copy2(source, work / "pristine" / source.name)
        shutil.copy2(lab.checks_file, work / "tests" / lab.checks_file.name)
    (work / "pyproject.toml").write_text(
        mutmut_config((work / "pristine").resolve(), tests or ["tests/"]), encoding="utf-8")
    return work


def run_mutmut(work: Path, mutant_globs: list[str], jobs: int, log: Path) -> float:
    """``mutmut run`` in ``work``; its chatty progress goes to ``log``. Returns seconds."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")
    env.pop("PYTHONPATH", None)
    mutmut = Path(sys.executable).with_name("mutmut")
    command = [str(mutmut) if mutmut.exists() else "mutmut", "run", "--max-children", str(jobs),
               *mutant_globs]
    start = time.monotonic()
    with open(log, "w", encoding="utf-8") as out:
        done = subprocess.run(command, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"mutmut run failed (exit {done.returncode}) in {work}; "
                           f"log {log}:\n{tail}")
    return seconds


# --- naming mutants by what they change ----------------------------------------------------


def _function_sources(code: str) -> dict[str, str]:
    """Every function of mutmut's mutated file (mangled names, methods included) -> source."""
    tree = ast.parse(code)
    lines = code.splitlines()  # once: ast.get_source_segment splits the file at every call
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[node.name] = "\n".join(lines[node.lineno - 1:node.end_lineno])
    return found


def readable_function(mangled: str) -> str:
    """``x_mean_image`` -> ``mean_image``; ``xǁPreprocessorǁfit`` -> ``Preprocessor.fit``."""
    if mangled.startswith("xǁ"):
        return ".".join(part for part in mangled[2:].split("ǁ") if part)
    return mangled.removeprefix("x_")


JOIN = " ⏎ "  # between the lines of a change that spans several


def describe_mutants(code: str, topic: str) -> dict[str, str]:
    """mutmut's mutant name -> ``function: original -> mutated`` (the changed lines, stripped;
    ``[2]``, ``[3]`` ... when one function has the same change at several places)."""
    sources = _function_sources(code)
    described: dict[str, str] = {}
    seen: dict[str, int] = {}
    for name, source in sources.items():
        if "__mutmut_" not in name or name.endswith("__mutmut_orig"):
            continue
        mangled, _, number = name.rpartition("__mutmut_")
        if not number.isdigit():
            continue
        original = sources.get(f"{mangled}__mutmut_orig", "")
        plain = mangled.rpartition("ǁ")[2] if "ǁ" in mangled else mangled.removeprefix("x_")
        # The def line carries the mangled name (and the default values mutmut mutates).
        old = original.replace(f"{mangled}__mutmut_orig(", f"{plain}(", 1).splitlines()
        new = source.replace(f"{name}(", f"{plain}(", 1).splitlines()
        removed, added = [], []
        for line in difflib.unified_diff(old, new, lineterm="", n=0):
            if line.startswith(("---", "+++", "@@")):
                continue
            (removed if line.startswith("-") else added).append(line[1:].strip())
        change = f"{JOIN.join(removed) or '(nothing)'} -> {JOIN.join(added) or '(deleted)'}"
        key = f"{readable_function(mangled)}: {change}"
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            key = f"{key} [{seen[key]}]"
        described[f"solutions.{topic}.{name}"] = key
    return described


def _functions_of_source(source: str) -> dict[str, set[str]]:
    """``name`` / ``Class.method`` -> the stripped lines of that function, in a plain module."""
    tree = ast.parse(source)
    lines = source.splitlines()
    found: dict[str, set[str]] = {}

    def visit(body, prefix=""):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                text = lines[node.lineno - 1:node.end_lineno]
                found[prefix + node.name] = {line.strip() for line in text}
            elif isinstance(node, ast.ClassDef) and not prefix:
                visit(node.body, f"{node.name}.")

    visit(tree.body)
    return found


def still_applies(description: str, functions: dict[str, set[str]]) -> bool:
    """Whether a mutant's description still names a function of the solution and lines that
    it still has (a cheap test, without mutmut: see generated_descriptions for the exact one)."""
    function, _, change = description.partition(": ")
    if function not in functions:
        return False
    change = change.rsplit(" [", 1)[0] if change.endswith("]") else change
    parts = change.split(" -> ")
    for cut in range(1, len(parts)):
        removed = " -> ".join(parts[:cut])
        if removed == "(nothing)" or all(line in functions[function]
                                         for line in removed.split(JOIN)):
            return True
    return False


def generated_descriptions(topic: str, source: str | None = None) -> set[str]:
    """The descriptions of every mutant mutmut makes of solutions/<topic>.py now, without
    running anything (mutmut's own generator, in a scratch folder for its config)."""
    import tempfile

    from mutmut import configuration
    from mutmut.mutation.file_mutation import mutate_file_contents

    path = REPO / "solutions" / f"{topic}.py"
    source = path.read_text(encoding="utf-8") if source is None else source
    here = Path.cwd()
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "solutions").mkdir()
        (Path(scratch) / "pyproject.toml").write_text(mutmut_config(Path(scratch), ["tests/"]))
        os.chdir(scratch)
        try:
            configuration.reset_config()
            mutated = mutate_file_contents(f"solutions/{topic}.py", source)
        finally:
            os.chdir(here)
            configuration.reset_config()
    return set(describe_mutants(mutated.code, topic).values())


# --- one lab's run -------------------------------------------------------------------------


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def function_globs(topic: str, functions: list[str]) -> list[str]:
    """mutmut name globs for ``mean_image`` or ``Preprocessor.fit`` / ``Preprocessor``."""
    globs = []
    for function in functions:
        if "." in function:
            cls, method = function.split(".", 1)
            globs.append(f"solutions.{topic}.xǁ{cls}ǁ{method}__mutmut_*")
        elif function[:1].isupper():
            globs.append(f"solutions.{topic}.xǁ{function}ǁ*")
        else:
            globs.append(f"solutions.{topic}.x_{function}__mutmut_*")
    return globs


def collect(work: Path, topics: list[str]) -> dict[str, dict[str, str]]:
    """{topic: {description: status}} from a finished work folder."""
    out = {}
    for topic in topics:
        mutated = work / "mutants" / "solutions" / f"{topic}.py"
        meta = json.loads(Path(f"{mutated}.meta").read_text(encoding="utf-8"))
        names = describe_mutants(mutated.read_text(encoding="utf-8"), topic)
        out[topic] = {names[name]: status_of(code)
                      for name, code in meta["exit_code_by_key"].items()
                      if code is not None and name in names}
    return out


def run_lab(lab: Lab, functions: list[str], jobs: int, save: bool = True,
            seconds: float | None = None) -> dict:
    """Run mutmut on one lab (``seconds`` given: only collect the finished work folder)."""
    work = WORK_DIR / lab.topic
    if seconds is None:
        prepare([lab], work)
        globs = function_globs(lab.topic, functions) if functions else []
        seconds = run_mutmut(work, globs, jobs, work / "mutmut.log")
    statuses = collect(work, [lab.topic])[lab.topic]
    import mutmut

    results = {
        "lab": lab.name,
        "tool": f"mutmut {getattr(mutmut, '__version__', '?')}",
        "command": f"python -m autograder.mutation_testing {lab.number}"
                   + (f" --functions {' '.join(functions)}" if functions else ""),
        "functions": functions or "all",
        "seconds": round(seconds, 1),
        "solution_sha256": _digest(REPO / "solutions" / f"{lab.topic}.py"),
        "checks_sha256": _digest(lab.checks_file),
        "mutants": dict(sorted(statuses.items())),
    }
    if save:
        MUTATION_DIR.mkdir(parents=True, exist_ok=True)
        results_path(lab.topic).write_text(json.dumps(results, indent=1, ensure_ascii=False)
                                           + "\n", encoding="utf-8")
    return results


# --- the table -----------------------------------------------------------------------------

COLUMNS = ("lab", "generated", "killed", "survived", "equivalent", "not yet killed",
           "unlisted", "timeout", "other", "score", "seconds")


def row(topic: str, results: dict) -> dict:
    statuses = results["mutants"]
    classified = load_classification(topic)
    survivors = {d for d, s in statuses.items() if s == SURVIVED}
    equivalent = survivors & set(classified["equivalent"])
    todo = survivors & set(classified["not_yet_killed"])
    killed = sum(s == KILLED for s in statuses.values())
    counted = len(statuses) - len(equivalent)
    stale = (results.get("solution_sha256") != _digest(REPO / "solutions" / f"{topic}.py")
             or results.get("checks_sha256") != _digest(REPO / "autograder" / "checks"
                                                          / f"test_{topic}.py"))
    scope = "" if results.get("functions") in (None, "all") else " (part)"
    return {
        "lab": results["lab"] + scope + (" *" if stale else ""),
        "generated": len(statuses),
        "killed": killed,
        "survived": len(survivors),
        "equivalent": len(equivalent),
        "not yet killed": len(todo),
        "unlisted": len(survivors - equivalent - todo),
        "timeout": sum(s == TIMEOUT for s in statuses.values()),
        "other": sum(s in (NO_TESTS, SUSPICIOUS) for s in statuses.values()),
        "score": f"{100 * killed / counted:.1f}%" if counted else "-",
        "seconds": results.get("seconds", ""),
    }


def print_table(rows: list[dict]) -> None:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS}
    print("  ".join(c.rjust(widths[c]) if c != "lab" else c.ljust(widths[c]) for c in COLUMNS))
    for r in rows:
        print("  ".join(str(r[c]).rjust(widths[c]) if c != "lab" else str(r[c]).ljust(widths[c])
                        for c in COLUMNS))
    print("score = killed / (generated - equivalent); survived = equivalent + not yet killed "
          "+ unlisted (unlisted: classify them in autograder/mutation/<topic>.toml); timeout: "
          "the checks ran past mutmut's time limit (counted as not killed); other: no tests "
          "or suspicious; * = the solution or its checks changed since that run; (part) = only "
          "some functions were mutated.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.mutation_testing",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("labs", nargs="*", help="01, 01_preprocessing or preprocessing "
                                                "(default: every lab)")
    parser.add_argument("--functions", nargs="+", default=[],
                        help="mutate only these functions (mean_image, Preprocessor.fit, "
                             "Preprocessor): for a lab whose full run is too slow")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (default 2)")
    parser.add_argument("--table", action="store_true",
                        help="print the committed last runs' table, run nothing")
    parser.add_argument("--survivors", action="store_true",
                        help="print the last runs' unclassified survivors as TOML lines")
    args = parser.parse_args(argv)
    labs = [find_lab(name) for name in args.labs] if args.labs else all_labs()
    if args.survivors:
        for lab in labs:
            results = load_results(lab.topic) or {"mutants": {}}
            listed = load_classification(lab.topic)
            known = set(listed["equivalent"]) | set(listed["not_yet_killed"])
            print(f"# {lab.name}")
            for description, status in results["mutants"].items():
                if status == SURVIVED and description not in known:
                    print(f"{json.dumps(description, ensure_ascii=False)} = \"\"")
        return 0
    rows = []
    for lab in labs:
        if not args.table:
            print(f"{lab.name}: mutmut run (log in build/mutation/{lab.topic}/mutmut.log) ...",
                  flush=True)
            run_lab(lab, args.functions, args.jobs)
        results = load_results(lab.topic)
        if results is None:
            print(f"{lab.name}: no run yet (python -m autograder.mutation_testing {lab.number})")
            continue
        rows.append(row(lab.topic, results))
        if not args.table:
            print_table(rows[-1:])
    if len(rows) > 1 or (rows and args.table):
        print()
        print_table(rows)
    unlisted = sum(r["unlisted"] for r in rows)
    if unlisted:
        print(f"\n{unlisted} surviving mutant(s) are not classified yet; list them with "
              f"python -m autograder.mutation_testing --survivors LAB ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
