"""Mutation testing (autograder/mutation_testing.py, `make mutation`) kept from rotting.

- The committed classification of each lab (autograder/mutation/<topic>.toml) matches
  the committed last run (<topic>.last-run.json): every survivor is listed, as equivalent
  or not yet killed, and every listed mutant survived that run and is still generated
  from today's solution.
- `--reference-from` keeps the reference pristine: a broken solution is killed, whereas
  it passes when the reference is the broken module too.
- A fixed sample (one small function of each lab, a few of its checks) goes through
  mutmut end to end in well under a minute, and agrees with the full runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from autograder import mutation_testing as mt
from autograder.labs import REPO, all_labs

LABS = all_labs()


def lab_id(lab):
    return lab.name


@pytest.mark.parametrize("lab", LABS, ids=lab_id)
def test_survivors_are_all_classified(lab):
    results = mt.load_results(lab.topic)
    assert results is not None, (
        f"no mutation run committed for {lab.name}: run `make mutation LABS={lab.number}` and "
        f"commit {mt.results_path(lab.topic).relative_to(REPO)}")
    survivors = {d for d, s in results["mutants"].items() if s == mt.SURVIVED}
    listed = mt.load_classification(lab.topic)
    equivalent, todo = set(listed["equivalent"]), set(listed["not_yet_killed"])
    both = equivalent & todo
    assert not both, f"listed as both equivalent and not yet killed: {both}"
    unlisted = sorted(survivors - equivalent - todo)
    assert not unlisted, (
        f"{lab.name}: {len(unlisted)} surviving mutant(s) of the last run are not in "
        f"{mt.classification_path(lab.topic).relative_to(REPO)}: kill each with a check or "
        f"list it (`python -m autograder.mutation_testing --survivors {lab.number}`):\n"
        + "\n".join(unlisted[:20]))
    gone = sorted((equivalent | todo) - survivors)
    assert not gone, (
        f"{lab.name}: listed mutant(s) that did not survive the last run (killed now, or no "
        f"longer generated): remove them from {mt.classification_path(lab.topic).name}:\n"
        + "\n".join(gone[:20]))
    for category in ("equivalent", "not_yet_killed"):
        for description, reason in listed[category].items():
            assert reason.strip() and "\n" not in reason, (
                f"{lab.name}: {category} mutant without a one-line reason: {description}")


@pytest.mark.parametrize("lab", LABS, ids=lab_id)
def test_listed_mutants_are_still_generated(lab):
    """A listed mutant whose function or original line today's solution no longer has is
    stale (mutmut's exact generator takes seconds a lab: the next run catches the rest)."""
    listed = mt.load_classification(lab.topic)
    names = set(listed["equivalent"]) | set(listed["not_yet_killed"])
    source = (REPO / "solutions" / f"{lab.topic}.py").read_text(encoding="utf-8")
    functions = mt._functions_of_source(source)
    stale = sorted(n for n in names if not mt.still_applies(n, functions))
    assert not stale, (
        f"{lab.name}: solutions/{lab.topic}.py no longer produces these listed mutants: rerun "
        f"`make mutation LABS={lab.number}` and update "
        f"{mt.classification_path(lab.topic).name}:\n" + "\n".join(stale[:20]))


def test_still_applies_reads_the_descriptions_back():
    functions = mt._functions_of_source("def f(a):\n    return a + 1\n\n\nclass K:\n"
                                        "    def g(self):\n        return 0\n")
    assert mt.still_applies("f: return a + 1 -> return a - 1", functions)
    assert mt.still_applies("K.g: return 0 -> return 1 [2]", functions)
    assert not mt.still_applies("f: return a + 2 -> return a - 1", functions)
    assert not mt.still_applies("h: return a + 1 -> return a - 1", functions)


def test_descriptions_name_the_function_and_the_change():
    code = textwrap.dedent('''
        def x_f__mutmut_orig(a):
            return a + 1
        def x_f__mutmut_1(a):
            return a - 1
        class K:
            def xǁKǁg__mutmut_orig(self):
                return 0
            def xǁKǁg__mutmut_1(self):
                return 1
    ''')
    assert mt.describe_mutants(code, "t") == {
        "solutions.t.x_f__mutmut_1": "f: return a + 1 -> return a - 1",
        "solutions.t.xǁKǁg__mutmut_1": "K.g: return 0 -> return 1",
    }


BROKEN_CHECK = '''
import numpy as np

def test_layernorm_agrees_with_the_reference(student, reference):
    x = np.arange(12.0).reshape(3, 4)
    gamma, beta = np.full(4, 2.0), np.full(4, 0.5)
    out = student.layernorm_forward(x, gamma, beta, {"eps": 1e-5})[0]
    expected = reference.layernorm_forward(x, gamma, beta, {"eps": 1e-5})[0]
    assert np.allclose(out, expected), "the student differs from the reference"
'''


def test_reference_from_keeps_the_reference_pristine(tmp_path):
    """The point of --reference-from: in-process, the student IS solutions.<topic>; mutate
    that module naively and the reference is the same mutant, so every comparison passes."""
    source = (REPO / "solutions" / "normalization.py").read_text(encoding="utf-8")
    broken = source.replace("def layernorm_forward(x, gamma, beta, ln_param):",
                            "def layernorm_forward(x, gamma, beta, ln_param):\n"
                            "    gamma = gamma * 0.5", 1)
    assert broken != source, "layernorm_forward's signature changed: update this test"
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "__init__.py").write_text("")
    (tmp_path / "solutions" / "normalization.py").write_text(broken)
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "test_normalization.py").write_text(BROKEN_CHECK)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts =\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path), OMP_NUM_THREADS="1")

    def pytest_run(*extra):
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--transport",
             "inprocess", "checks/test_normalization.py", *extra],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    naive = pytest_run()
    assert naive.returncode == 0, naive.stdout[-2000:]  # the pitfall: both sides broken
    pristine = pytest_run("--reference-from", str(REPO / "solutions"))
    assert pristine.returncode == 1, pristine.stdout[-2000:]
    assert "the student differs from the reference" in pristine.stdout


# One small function of each lab and the checks that reach it (pytest -k), run by mutmut
# in one work folder: the tooling end to end, in seconds.
SAMPLE = {
    "preprocessing": ("channel_std", "channel_std"),
    "normalization": ("layernorm_forward", "layernorm_forward"),
    "dropout_ensembles": ("majority_vote", "majority_vote"),
    "convolutions": ("conv_output_size", "conv_output_size"),
    "transfer_learning": ("count_parameters", "count_parameters"),
    "augmentation": ("soft_cross_entropy", "soft_cross_entropy"),
    "classic_architectures": ("stacked_conv_params", "stacked_conv_params"),
    "modern_architectures": ("Transition.__init__", "transition"),
}
SAMPLE_SIZE = 3


def test_fast_sample_agrees_with_the_full_runs(tmp_path):
    labs = [lab for lab in LABS if lab.topic in SAMPLE]
    assert len(labs) == len(SAMPLE)
    expression = " or ".join(k for _, k in SAMPLE.values())
    work = mt.prepare(labs, tmp_path / "work", tests=["tests/", "-k", expression])
    # The first SAMPLE_SIZE mutants of each function (mutmut numbers them in source order).
    globs = [g.replace("*", str(i)) for lab in labs
             for g in mt.function_globs(lab.topic, [SAMPLE[lab.topic][0]])
             for i in range(1, SAMPLE_SIZE + 1)]
    start = time.monotonic()
    mt.run_mutmut(work, globs, jobs=2, log=tmp_path / "mutmut.log")
    seconds = time.monotonic() - start
    found = mt.collect(work, [lab.topic for lab in labs])
    for lab in labs:
        function = SAMPLE[lab.topic][0]
        mine = {d: s for d, s in found[lab.topic].items()
                if d.split(": ")[0] == function}
        assert mine, f"{lab.name}: no mutant of {function} was run ({tmp_path / 'mutmut.log'})"
        assert any(s == mt.KILLED for s in mine.values()), (
            f"{lab.name}: the checks killed none of {function}'s mutants: {mine}")
        full = (mt.load_results(lab.topic) or {"mutants": {}})["mutants"]
        for description, status in mine.items():
            if description not in full:
                continue  # the solution changed since its full run
            # A subset of the checks kills no more than all of them do, and what the full
            # run left alive stays alive here.
            if status == mt.KILLED:
                assert full[description] != mt.SURVIVED, (
                    f"{lab.name}: killed by the sample, survived the full run: {description}")
            if full[description] == mt.SURVIVED:
                assert status == mt.SURVIVED, (
                    f"{lab.name}: survived the full run, {status} in the sample: {description}")
    print(f"mutation sample: {sum(map(len, found.values()))} mutants in {seconds:.1f} s")
    print(json.dumps({t: len(v) for t, v in found.items()}))
