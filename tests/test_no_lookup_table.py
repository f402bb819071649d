"""No hidden check reuses an input of a visible check.

A student sees the visible checks, so a hidden check that calls an answer with
the very input a visible check used can be passed by a lookup table of the
visible answers (``if np.array_equal(x, X_VISIBLE): return EXPECTED``). This
test records, per lab, every input that the visible check cells pass to each
answer name and every input that the hidden checks pass to it, and fails when
a hidden check reuses one.

How the inputs are recorded, on the reference solution:

- visible checks: the lab's setup cell runs, then the names of
  ``vars(solutions.<topic>)`` are added, the answer names (functions and
  classes defined in that module) wrapped so that every call records its
  inputs; then each visible check cell (nbgrader ``grade: true``) runs in that
  namespace, in order. A name a check cell reads and neither the setup cell,
  the solution nor an earlier check cell defines (``x_train``) comes from the
  statement of an earlier notebook cell that assigns it, run alone (so the
  data is loaded, the experiments are not run).
- hidden checks: ``autograder/checks/test_<topic>.py`` runs in this process
  with pytest on the reference, as ``pytest autograder/checks`` grades it, with
  the ``student`` object's namespace wrapped the same way.

A function is wrapped by a function that records its arguments; a class by a
subclass (so that ``isinstance``, ``nn.Module`` and ``super()`` still work)
whose constructor records under the class name and whose methods record under
``Class.method``: ``student.Preprocessor(mode).fit(x)`` records ``mode`` under
``Preprocessor`` and ``x`` under ``Preprocessor.fit``, and ``module(x)``
records under ``Module.forward``. An instance of an answer class returned by
an answer function records the same way. Calls made from inside a recorded
call (the reference calling its own helpers) are not recorded: only what a
check passes counts.

The rule: inputs are compared per name. Every argument, keyword argument,
and recursively every item of a list, tuple or dict among them, and every
tensor of the ``state_dict()`` of a ``torch.nn.Module`` among them, is an
input. A numpy array, a torch tensor, or a list/tuple nested only of numbers
(``[(3, 1, 1), (3, 1, 2)]``), is compared by its shape and the bytes of its
values converted to float64 (complex128 for complex values): the same values
in another dtype, or as a tensor, are the same input, as ``np.array_equal``
would say. Trivial inputs are ignored, because a lookup table cannot tell one
call from another by them: scalars, strings, None, arrays of fewer than 4
elements (empty ones included), arrays whose elements are all the same value
(zeros, ones, ``np.full``), and any other object.
"""

from __future__ import annotations

import ast
import builtins
import functools
import hashlib
import importlib
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

import autograder.plugin
from autograder.execute import AnswerSource, build_namespace, exec_cell
from autograder.labs import REPO, all_labs
from autograder.notebook import nbgrader_meta, setup_cells
from autograder.student import InProcessStudent

MIN_ELEMENTS = 4


# --- what counts as an input -----------------------------------------------------------------


def _numeric_nest(value) -> bool:
    """A non-empty list/tuple nested only of real numbers (no arrays, no strings)."""
    if isinstance(value, (list, tuple)):
        return bool(value) and all(
            _numeric_nest(v) if isinstance(v, (list, tuple)) else _is_number(v) for v in value
        )
    return False


def _is_number(value) -> bool:
    return isinstance(value, (bool, int, float, complex, np.number, np.bool_))


def _as_array(value):
    """``value`` as a numpy array of numbers, or None when it is not one."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        return (t.resolve_conj() if t.is_complex() else t.to(torch.float64)).numpy()
    if isinstance(value, np.ndarray):
        return value if value.dtype.kind in "biufc" else None
    if _numeric_nest(value):
        try:
            array = np.asarray(value)
        except ValueError:  # ragged
            return None
        return array if array.dtype.kind in "biufc" else None
    return None


def fingerprint(array: np.ndarray):
    """(shape, hash of the values as float64 / complex128), or None for a trivial array."""
    if array.size < MIN_ELEMENTS:
        return None
    values = array.astype(np.complex128 if array.dtype.kind == "c" else np.float64)
    first = values.flat[0]
    if np.all(values == first) or np.all(np.isnan(values)):
        return None
    digest = hashlib.blake2b(np.ascontiguousarray(values).tobytes(), digest_size=16).hexdigest()
    return tuple(array.shape), digest


def _describe(value, array) -> str:
    if isinstance(value, torch.Tensor):
        return f"{str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return f"{type(value).__name__} of numbers, shape {array.shape}"


def inputs(value, path: str, seen=None):
    """Yield (path, description, key) for every non-trivial numeric input inside ``value``."""
    seen = set() if seen is None else seen
    array = _as_array(value)
    if array is not None:
        key = fingerprint(array)
        if key is not None:
            yield path, _describe(value, array), key
        return
    if id(value) in seen:
        return
    if isinstance(value, (list, tuple)):
        seen.add(id(value))
        for i, item in enumerate(value):
            yield from inputs(item, f"{path}[{i}]", seen)
    elif isinstance(value, dict):
        seen.add(id(value))
        for key, item in value.items():
            yield from inputs(item, f"{path}[{key!r}]", seen)
    elif isinstance(value, torch.nn.Module):
        seen.add(id(value))
        for key, item in value.state_dict().items():
            yield from inputs(item, f"{path}.state_dict()[{key!r}]", seen)


# --- recording --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Use:
    context: str  # "visible check cell 'check_mean_image'", "test_x.py::test_y"
    name: str  # "mean_image", "Preprocessor.fit"
    path: str  # "argument 0", "keyword 'x'", "argument 3['running_mean']"
    what: str  # "uint8 array of shape (2, 1, 2, 2)"
    key: tuple


class Recorder:
    """Wraps the answer names of a solution module so that calls record their inputs."""

    def __init__(self, module):
        self.module = module
        self.context: str | None = None
        self.uses: list[Use] = []
        self.calls: Counter = Counter()  # context -> calls of answer names (trivial ones too)
        self._depth = 0
        self._classes: dict[type, type] = {}
        self._originals = {c for c in vars(module).values()
                           if isinstance(c, type) and c.__module__ == module.__name__}

    # The names -----------------------------------------------------------------------------

    def answer_names(self) -> dict:
        """The functions and classes the solution module defines, wrapped."""
        wrapped = {}
        for name, value in vars(self.module).items():
            if name.startswith("_") or getattr(value, "__module__", None) != self.module.__name__:
                continue
            if isinstance(value, type):
                wrapped[name] = self.recording_class(value)
            elif callable(value):
                wrapped[name] = self._wrap(value, name)
        return wrapped

    def namespace(self) -> dict:
        """``vars(module)`` with the answer names wrapped."""
        return {**vars(self.module), **self.answer_names()}

    # Recording -----------------------------------------------------------------------------

    def record(self, name: str, args, kwargs) -> None:
        if self._depth or self.context is None:
            return
        self.calls[self.context] += 1
        labelled = [(f"argument {i}", a) for i, a in enumerate(args)]
        labelled += [(f"keyword {k!r}", v) for k, v in kwargs.items()]
        for label, value in labelled:
            for path, what, key in inputs(value, label):
                self.uses.append(Use(self.context, name, path, what, key))

    def _call(self, name, fn, args, kwargs, record_args=None):
        self.record(name, args if record_args is None else record_args, kwargs)
        self._depth += 1
        try:
            result = fn(*args, **kwargs)
        finally:
            self._depth -= 1
        return self.adopt(result)

    def _wrap(self, fn, name):
        @functools.wraps(fn)
        def recorded(*args, **kwargs):
            return self._call(name, fn, args, kwargs)

        return recorded

    def adopt(self, result):
        """An instance of an answer class made by an answer becomes a recording one."""
        for obj in result if isinstance(result, (tuple, list)) else (result,):
            cls = type(obj)
            if cls in self._originals:
                try:
                    obj.__class__ = self.recording_class(cls)
                except TypeError:
                    pass
        return result

    def recording_class(self, cls: type) -> type:
        if cls in self._classes:
            return self._classes[cls]
        if cls in self._classes.values():
            return cls
        recorder, label = self, cls.__name__
        attrs = {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                 "__doc__": cls.__doc__}
        init = cls.__init__

        def __init__(self, *args, **kwargs):
            recorder._call(label, init, (self, *args), kwargs, record_args=args)

        attrs["__init__"] = __init__
        for klass in reversed(cls.__mro__):  # the closest definition wins
            if klass.__module__ != self.module.__name__:
                continue
            for name, member in vars(klass).items():
                if name.startswith("_") and name != "__call__":
                    continue
                attrs[name] = self._wrap_member(f"{label}.{name}", member)
        for name in [n for n, v in attrs.items() if v is None]:
            del attrs[name]
        sub = type(cls.__name__, (cls,), attrs)
        self._classes[cls] = sub
        return sub

    def _wrap_member(self, name, member):
        recorder = self
        if isinstance(member, staticmethod):
            return staticmethod(self._wrap(member.__func__, name))
        if isinstance(member, classmethod):
            fn = member.__func__
            return classmethod(functools.wraps(fn)(
                lambda cls, *a, **k: recorder._call(name, fn, (cls, *a), k, record_args=a)))
        if callable(member) and not isinstance(member, type):
            fn = member

            @functools.wraps(fn)
            def method(self, *args, **kwargs):
                return recorder._call(name, fn, (self, *args), kwargs, record_args=args)

            return method
        return None  # properties and data: inherited as they are


# --- the visible checks -----------------------------------------------------------------------


def _strip_magics(source: str) -> str:
    return "\n".join("pass  # " + line if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())


def _free_names(tree: ast.AST) -> set[str]:
    """Names read and never bound in ``tree`` (builtins left out)."""
    loaded, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
    return loaded - bound - set(dir(builtins))


def _assigned(stmt: ast.stmt) -> set[str]:
    if isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in stmt.names}
    return set()


def _kind(cell) -> str:
    meta = nbgrader_meta(cell)
    if meta.get("grade_id", "").startswith("setup"):
        return "setup"
    if meta.get("solution"):
        return "answer"
    if meta.get("grade"):
        return "check"
    return "other"


def record_visible_checks(lab, recorder: Recorder) -> list[str]:
    """Run the lab's visible check cells on the recording reference; return the cells' ids."""
    nb = nbformat.read(lab.notebook, as_version=4)
    namespace, _ = build_namespace(AnswerSource(lab=lab, setup=setup_cells(nb), answers=[]))
    namespace.update(recorder.answer_names())
    cells = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    others = []  # (index, syntax tree) of the cells that are neither setup, answer nor check
    for i, c in cells:
        if _kind(c) == "other":
            try:
                others.append((i, ast.parse(_strip_magics(c.source))))
            except SyntaxError:
                pass  # not Python: no statement to take from it (a NameError says so below)

    def provide(name: str, before: int, for_what: str, before_stmt: int | None = None) -> None:
        """Run the latest statement before cell ``before`` (or, with ``before_stmt``, before
        that statement of cell ``before``) that assigns ``name``."""
        for index, tree in reversed(others):
            if index > before or (index == before and before_stmt is None):
                continue
            body = tree.body[:before_stmt] if index == before else tree.body
            for position in reversed(range(len(body))):
                stmt = body[position]
                if name in _assigned(stmt):
                    for needed in sorted(_free_names(stmt) - namespace.keys()):
                        provide(needed, index, for_what, position)
                    recorder.context = f"notebook cell {index} (run for {for_what})"
                    code = compile(ast.Module(body=[stmt], type_ignores=[]),
                                   f"<{lab.name} cell {index}>", "exec")
                    exec(code, namespace)
                    return

    checked = []
    for index, cell in cells:
        if _kind(cell) != "check":
            continue
        grade_id = nbgrader_meta(cell).get("grade_id", f"cell {index}")
        source = _strip_magics(cell.source)
        context = f"visible check cell {grade_id!r}"
        for name in sorted(_free_names(ast.parse(source)) - namespace.keys()):
            provide(name, index, context)
        recorder.context = context
        try:
            exec_cell(source, grade_id, namespace)
        except Exception as e:  # the visible checks must pass on the reference
            pytest.fail(f"{lab.name}: {context} fails on the reference solution, so its inputs "
                        f"cannot be recorded: {type(e).__name__}: {e}", pytrace=False)
        finally:
            recorder.context = None
        checked.append(context)
    return checked


# --- the hidden checks ------------------------------------------------------------------------


class _HiddenRun:
    """A pytest plugin: names the running check for the recorder, collects the outcomes."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder
        self.collected: list[str] = []
        self.outcomes: dict[str, str] = {}

    @staticmethod
    def context(nodeid: str) -> str:
        """``autograder/checks/test_x.py::test_y[a]`` -> ``test_x.py::test_y[a]``."""
        path, _, rest = nodeid.partition("::")
        return f"{Path(path).name}::{rest}"

    def pytest_collection_finish(self, session):
        self.collected = [self.context(item.nodeid) for item in session.items]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        self.recorder.context = self.context(item.nodeid)
        try:
            yield
        finally:
            self.recorder.context = None

    def pytest_runtest_logreport(self, report):
        context = self.context(report.nodeid)
        if report.failed:
            self.outcomes[context] = (f"{report.when} failed: "
                                      f"{str(report.longrepr).strip().splitlines()[-1]}")
        elif report.skipped:
            self.outcomes.setdefault(context, f"skipped ({report.when})")
        elif report.when == "call":
            self.outcomes.setdefault(context, "passed")


def record_hidden_checks(lab, recorder: Recorder, monkeypatch) -> list[str]:
    """Run the lab's hidden checks in-process on the recording reference."""

    class RecordingStudent(InProcessStudent):
        @classmethod
        def from_module(cls, module, label="reference"):
            if module is not recorder.module:
                raise RuntimeError(f"the student fixture loaded {module.__name__}, "
                                   f"not {recorder.module.__name__}")
            return cls(recorder.namespace(), label=label)

    monkeypatch.setattr(autograder.plugin, "InProcessStudent", RecordingStudent)
    saved_config = dict(autograder.plugin._CONFIG)
    run = _HiddenRun(recorder)
    try:
        code = pytest.main([str(lab.checks_file), "-qq", "-p", "no:cacheprovider", "-o",
                            "addopts=", "--rootdir", str(REPO)], plugins=[run])
    finally:
        autograder.plugin._CONFIG.clear()
        autograder.plugin._CONFIG.update(saved_config)
    bad = {c: o for c, o in run.outcomes.items() if o != "passed"}
    missing = [c for c in run.collected if c not in run.outcomes]
    if code != 0 or bad or missing or not run.collected:
        details = "\n".join(f"  {c}: {o}" for c, o in bad.items())
        details += "".join(f"\n  {c}: did not run" for c in missing)
        pytest.fail(f"{lab.name}: the hidden checks did not all pass on the reference in-process "
                    f"(pytest exit code {code}, {len(run.collected)} collected), so their inputs "
                    f"are not all recorded:\n{details}", pytrace=False)
    return run.collected


# --- the test ---------------------------------------------------------------------------------


def collisions(uses: list[Use], visible: set[str]) -> list[str]:
    """One line per (hidden check, name, input) that equals an input of a visible check."""
    seen_visible: dict[tuple, Use] = {}
    for use in uses:
        if use.context not in visible:
            continue
        seen_visible.setdefault((use.name, use.key), use)
    lines = []
    for use in uses:
        if use.context in visible:
            continue
        match = seen_visible.get((use.name, use.key))
        if match is not None:
            line = (f"{use.context} calls {use.name} with {use.path} ({use.what}) equal to "
                    f"{match.path} ({match.what}) of its call in {match.context}")
            if line not in lines:
                lines.append(line)
    return lines


@pytest.mark.parametrize("lab", all_labs(), ids=lambda lab: lab.name)
def test_hidden_checks_do_not_reuse_visible_inputs(lab, monkeypatch):
    module = importlib.import_module(lab.solution_module)
    recorder = Recorder(module)
    visible = record_visible_checks(lab, recorder)
    hidden = record_hidden_checks(lab, recorder, monkeypatch)

    # Guard against recording nothing (a wrapper that no longer sees the calls): every
    # visible check cell and every hidden check calls at least one answer.
    silent = [c for c in [*visible, *hidden] if recorder.calls[c] == 0]
    assert not silent, (f"{lab.name}: no call of an answer was recorded during "
                        f"{', '.join(silent)}: the recording does not see the calls.")

    visible_contexts = {u.context for u in recorder.uses
                        if u.context.startswith(("visible check cell", "notebook cell"))}
    found = collisions(recorder.uses, visible_contexts)
    assert not found, (
        f"{lab.name}: {len(found)} input(s) of hidden checks equal inputs of the visible checks; "
        f"a lookup table of the visible answers passes them. Give these hidden checks their own "
        f"inputs (another hand-made example, or random ones from `rng` compared with "
        f"`reference`):\n" + "\n".join(found)
    )


# --- the recorder itself ----------------------------------------------------------------------


class Scaler:
    __module__ = "fake_solution"

    def __init__(self, factor):
        self.factor = factor

    def fit(self, x):
        self.mean = 1.0  # what fit computes does not matter here
        return self

    def apply(self, x):
        return self.helper(x)

    def helper(self, x):
        return x - self.mean


def make_scaler(factor):
    return Scaler(factor)


make_scaler.__module__ = "fake_solution"


def test_recorder_sees_methods_of_returned_objects_and_ignores_trivial_inputs():
    """The rule of this module's docstring, on a fake solution module."""
    fake = type(importlib)("fake_solution")
    fake.Scaler, fake.make_scaler, fake.np = Scaler, make_scaler, np
    recorder = Recorder(fake)
    ns = recorder.namespace()
    x = np.arange(12.0).reshape(3, 4)
    recorder.context = "visible"
    pre = ns["Scaler"](2.0)
    assert pre.fit(x) is pre and isinstance(pre, Scaler)
    pre.apply(np.ones((5, 5)))  # all one value: trivial; helper is called inside: not recorded
    ns["make_scaler"](3.0).fit([[1, 2], [3, 5]])
    recorder.context = "hidden"
    ns["make_scaler"]([[0, 1], [2, 3]]).fit(np.zeros(7)).apply(torch.arange(12.0).reshape(3, 4))
    ns["Scaler"](1.0).fit({"a": [torch.tensor([1.0, 2.0, 3.0]), x.astype(np.float32)]})
    names = sorted({(u.context, u.name, u.path) for u in recorder.uses})
    assert names == [
        ("hidden", "Scaler.apply", "argument 0"),
        ("hidden", "Scaler.fit", "argument 0['a'][1]"),
        ("hidden", "make_scaler", "argument 0"),
        ("visible", "Scaler.fit", "argument 0"),
    ], names
    found = collisions(recorder.uses, {"visible"})
    assert len(found) == 1 and re.search(r"hidden calls Scaler\.fit with argument 0\['a'\]\[1\] "
                                         r"\(float32 array of shape \(3, 4\)\) equal to argument 0 "
                                         r"\(float64 array of shape \(3, 4\)\)", found[0]), found
