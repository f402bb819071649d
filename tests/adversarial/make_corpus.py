"""Write the adversarial Lab 01 submissions and the score and message each must get.

    python tests/adversarial/make_corpus.py

Each submission starts from the reference solution (honest), from an
"isolated" variant whose Preprocessor does not call ``mean_image`` (so that a
bad ``mean_image`` costs exactly its own checks), or from a "wrong" one whose
functions return wrong values of the right shape and whose Preprocessor is the
stub (it earns exactly 1 point: ``test_statistics_do_not_modify_input``).
The expected scores are worked out from the checks' points by hand, not by
grading: mean_image 3, channel_mean 3, channel_std 2, "do not modify" 1, and six
checks of the three statistics together (3 dtypes, 3 shapes: 1 point each), so the
three statistics cells hold 15; the Preprocessor cell 39; 54 in all.

Writes ``tests/adversarial/*.ipynb`` and ``tests/adversarial/expected.json``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from autograder.build import solved_notebook  # noqa: E402
from autograder.labs import find_lab  # noqa: E402
from autograder.notebook import answer_cells  # noqa: E402

LAB = find_lab("01_preprocessing")
FULL, STATISTICS_ONLY, WRONG_BASE = 54, 15, 1
# The isolated variant with a bad mean_image: its own two checks lost (1 + 2), and the six
# checks of the three statistics together (3 dtypes + 3 shapes), which call it first.
WITHOUT_MEAN_IMAGE = 45

# Code that finds the repository from labkit, which the student may import.
FIND_REPO = "import labkit, pathlib\n_repo = pathlib.Path(labkit.__file__).resolve().parents[2]\n"


def cells_of(nb) -> dict[str, str]:
    return dict(answer_cells(nb))


def with_cells(nb, changes: dict[str, str | None]):
    """A copy of ``nb`` with answer cells replaced (None: the cell removed)."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    kept = []
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in changes:
            if changes[gid] is None:
                continue
            cell.source = changes[gid]
        kept.append(cell)
    nb.cells = kept
    return nb


def main() -> int:
    honest = solved_notebook(LAB)
    ref = cells_of(honest)
    stub = cells_of(nbformat.read(LAB.notebook, 4))
    assert "self.mean = mean_image(x_train)" in ref["preprocessor"], "reference changed"
    isolated_pre = ref["preprocessor"].replace("self.mean = mean_image(x_train)",
                                               "self.mean = x_train.mean(axis=0)")
    isolated = with_cells(honest, {"preprocessor": isolated_pre})
    wrong = with_cells(honest, {
        "mean_image": "def mean_image(x):\n    return np.zeros(x.shape[1:])\n",
        "channel_mean": "def channel_mean(x):\n    return np.zeros(x.shape[1])\n",
        "channel_std": "def channel_std(x):\n    return np.ones(x.shape[1])\n",
        "preprocessor": stub["preprocessor"],
    })
    wrong_cells = cells_of(wrong)

    def prefix(nb, gid, code):
        return with_cells(nb, {gid: code + "\n" + cells_of(nb)[gid]})

    def wrong_mean_image(body):
        code = "import numpy as np\n\ndef mean_image(x):\n" + body + \
            "    return np.zeros(x.shape[1:])\n"
        return with_cells(wrong, {"mean_image": code})

    def honest_mean_image(first_lines):
        cell = ref["mean_image"].replace('    """\n', '    """\n' + first_lines, 1)
        assert cell != ref["mean_image"]
        return with_cells(honest, {"mean_image": cell})

    def isolated_mean_image(return_line):
        code = "import numpy as np\nimport torch\n\ndef mean_image(x):\n" + return_line
        return with_cells(isolated, {"mean_image": code})

    def exploit(attack):
        """The wrong answers, but mean_image is right where ``attack`` (a function body
        returning True when it got through) succeeds: any success shows in the score."""
        code = ("import numpy as np\n\ndef _attack():\n" + attack +
                "\ndef mean_image(x):\n    try:\n        if _attack():\n"
                "            return x.mean(axis=0)\n    except BaseException:\n        pass\n"
                "    return np.zeros(x.shape[1:])\n")
        return with_cells(wrong, {"mean_image": code})

    def forged_at_load(frame_code):
        """The isolated variant whose mean_image cell, at its top level, writes a forged
        message on the grader's socket (found among its open file descriptors)."""
        code = ("import json, os, socket, struct\n"
                "def _frame(header, buffers=()):\n"
                "    data = json.dumps(header).encode()\n"
                "    out = struct.pack('<II', len(buffers), len(data)) + data\n"
                "    for b in buffers:\n        out += struct.pack('<Q', len(b)) + b\n"
                "    return out\n"
                "for _fd in range(3, 64):\n    try:\n"
                "        _s = socket.socket(fileno=os.dup(_fd))\n"
                "        if _s.type == socket.SOCK_STREAM and _s.family == socket.AF_UNIX:\n"
                "            _s.sendall(" + frame_code + ")\n    except OSError:\n"
                "        pass\n" + cells_of(isolated)["mean_image"])
        return with_cells(isolated, {"mean_image": code})

    pre = ref["preprocessor"]
    unknown_mode = 'raise ValueError(f"Unknown mode'
    assert unknown_mode in pre, "reference changed"

    def exit_on_unknown_mode(import_line, exit_call):
        cell = pre.replace(unknown_mode, exit_call + "\n            " + unknown_mode)
        return with_cells(honest, {"preprocessor": import_line + "\n" + cell})

    injection = ("**Score: 37 / 37**\n# Full marks\n<script>alert(1)</script>"
                 "<img src=x onerror=alert(1)>\x1b[2J\x1b[31mred\x07\n```\n````\n| a | b |")
    cases = {
        # name: (notebook or raw bytes, score, a phrase the feedback must contain
        #        [, what the feedback must not contain])
        "honest": (honest, FULL, ""),
        "infinite_loop_at_top": (prefix(honest, "preprocessor", "while True:\n    pass\n"),
                                 STATISTICS_ONLY, "took longer than"),
        "infinite_loop_in_function": (isolated_mean_image(
            "    while True:\n        try:\n            pass\n"
            "        except BaseException:\n            pass\n"), WITHOUT_MEAN_IMAGE - 1,
            "time limit"),  # "do not modify" calls mean_image too: 1 more point lost
        "huge_allocation": (prefix(honest, "preprocessor", "_big = np.ones((200_000, 200_000))"),
                            STATISTICS_ONLY, "MemoryError"),
        "fork_loop": (prefix(honest, "preprocessor", "import os\nwhile True:\n    os.fork()"),
                      STATISTICS_ONLY, "Operation not permitted"),
        "ignore_sigalrm_loop_at_top": (prefix(honest, "preprocessor",
                                              "import signal\nsignal.signal(signal.SIGALRM, "
                                              "signal.SIG_IGN)\nwhile True:\n    pass\n"),
                                       STATISTICS_ONLY, "took longer than"),
        # Each exploit earns mean_image's points only if it gets through.
        "read_etc_shadow": (exploit("    return len(open('/etc/shadow').read()) > 0\n"),
                            WRONG_BASE, "mean_image"),
        "raw_unix_socket": (exploit(
            "    import ctypes\n    libc = ctypes.CDLL(None, use_errno=True)\n"
            "    return libc.socket(1, 1, 0) >= 0\n"), WRONG_BASE, "mean_image"),
        "fork_bomb_as_root": (exploit(
            "    import os\n    made = 0\n    for _ in range(300):\n        try:\n"
            "            if os.fork() == 0:\n                os._exit(0)\n            made += 1\n"
            "        except OSError:\n            pass\n    return made > 0\n"),
            WRONG_BASE, "mean_image"),
        "setsid_daemon": (exploit(
            "    import os, time\n    if os.fork() == 0:\n        os.setsid()\n"
            "        time.sleep(3600)\n        os._exit(0)\n    return True\n"),
            WRONG_BASE, "mean_image"),
        "shared_memory_3_gib": (exploit(
            "    import mmap\n    m = mmap.mmap(-1, 3 * 2**30, mmap.MAP_SHARED)\n"
            "    for i in range(0, len(m), 2**20):\n        m[i] = 1\n    return True\n"),
            WRONG_BASE, "mean_image"),
        "fill_the_disk": (exploit(
            "    import os, tempfile\n    written = 0\n    for i in range(400):\n"
            "        try:\n            with open(os.path.join(tempfile.gettempdir(), f'f{i}'),"
            " 'wb') as f:\n                f.write(b'x' * 2**20)\n"
            "            written += 2**20\n        except OSError:\n            break\n"
            "    return written >= 300 * 2**20\n"), WRONG_BASE, "mean_image"),
        "new_user_namespace": (exploit(
            "    import ctypes\n    libc = ctypes.CDLL(None, use_errno=True)\n"
            "    return libc.unshare(0x10000000) == 0\n"), WRONG_BASE, "mean_image"),
        "forged_request_to_grader": (forged_at_load(
            "_frame({'kind': 'request', 'id': 1, 'op': 'getattr', "
            "'args': [{'t': 'peer', 'id': 1}, '__class__']})"),
            WITHOUT_MEAN_IMAGE - 1, "broke the grader's protocol"),
        "forged_oversized_reply": (forged_at_load(
            "struct.pack('<II', 1, 2) + b'{}' + struct.pack('<Q', 96 * 2**20) + b'x' * 2**20"),
            WITHOUT_MEAN_IMAGE - 1, "broke the grader's protocol"),
        "forged_pointer_reply": (forged_at_load(
            "_frame({'kind': 'reply', 'id': 2, 'value': {'t': 'nd', 'dtype': '|O', "
            "'shape': [1], 'buf': 0, 'ptr': 140000000000}}, [b'\\0' * 8])"),
            WITHOUT_MEAN_IMAGE - 1, "broke the grader's protocol"),
        "markdown_html_ansi_injection": (isolated_mean_image(
            f"    raise ValueError({injection!r})\n"), WITHOUT_MEAN_IMAGE - 1, "Full marks",
            ["<script>", "<img", "\x1b", "\x07"]),
        # An answer whose methods would run in the grader if it crossed as an object: it
        # stays in the student's process (a handle), and its values are what count.
        "returns_rigged_ndarray_subclass": (with_cells(wrong, {"mean_image": (
            "import numpy as np\n\nclass Rigged(np.ndarray):\n"
            "    def __eq__(self, other):\n        return np.ones(np.shape(other), bool)\n"
            "    def __sub__(self, other):\n        return np.zeros(np.shape(other))\n"
            "    __rsub__ = __sub__\n"
            "    def __array__(self, *a, **k):\n        return np.asarray(a[0]) if a else "
            "np.zeros(self.shape)\n\n"
            "def mean_image(x):\n    return np.zeros(x.shape[1:]).view(Rigged)\n")}),
            WRONG_BASE, "mean_image"),
        "lookup_table_of_visible_answers": (with_cells(wrong, {"mean_image": (
            "import numpy as np\n\n_VISIBLE = np.array([[[[0, 10], [20, 30]]], "
            "[[[10, 10], [0, 255]]]], dtype=np.uint8)\n\ndef mean_image(x):\n"
            "    if x.shape == _VISIBLE.shape and np.array_equal(x, _VISIBLE):\n"
            "        return np.array([[[5.0, 10.0], [10.0, 142.5]]])\n"
            "    return np.zeros(x.shape[1:])\n")}), WRONG_BASE, "mean_image"),
        "sys_exit_at_import": (prefix(honest, "preprocessor", "import sys\nsys.exit(0)"),
                               STATISTICS_ONLY, "SystemExit"),
        # A cell that ends the process costs that cell: a fresh process runs the others.
        "os_exit_at_import": (prefix(honest, "preprocessor", "import os\nos._exit(0)"),
                              STATISTICS_ONLY, "ended the grading process"),
        "sys_exit_in_function": (exit_on_unknown_mode("import sys", "sys.exit(0)"),
                                 FULL - 2, "SystemExit"),  # the two unknown-mode checks lost
        "os_exit_in_function": (exit_on_unknown_mode("import os", "os._exit(0)"),
                                FULL - 2, "ended its process"),
        "patch_numpy_allclose": (prefix(wrong, "mean_image",
                                        "import numpy as np\nnp.allclose = lambda *a, **k: True\n"
                                        "np.all = lambda *a, **k: True\n"
                                        "np.array_equal = lambda *a, **k: True\n"),
                                 WRONG_BASE, "mean_image"),
        "patch_numpy_testing": (prefix(wrong, "mean_image",
                                       "import numpy as np\n"
                                       "np.testing.assert_allclose = lambda *a, **k: None\n"
                                       "np.testing.assert_array_equal = lambda *a, **k: None\n"),
                                WRONG_BASE, "mean_image"),
        "patch_math_isclose": (prefix(wrong, "mean_image",
                                      "import math\nmath.isclose = lambda *a, **k: True\n"),
                               WRONG_BASE, "mean_image"),
        # Patched builtins break the student's own process (the code that answers the
        # grader runs there too): every check fails, none passes by the patch.
        "patch_builtins": (prefix(wrong, "mean_image",
                                  "import builtins\nbuiltins.all = lambda *a: True\n"
                                  "builtins.any = lambda *a: True\n"
                                  "builtins.abs = lambda x: 0\n"),
                           0, "mean_image"),
        "import_solutions": (wrong_mean_image(
            "    try:\n        from solutions.preprocessing import mean_image as m\n"
            "        return m(x)\n    except BaseException:\n        pass\n"),
            WRONG_BASE, "mean_image"),
        "import_autograder": (wrong_mean_image(
            "    try:\n        import autograder.checks.test_preprocessing as t\n"
            "        import solutions.preprocessing as r\n        return r.mean_image(x)\n"
            "    except BaseException:\n        pass\n"), WRONG_BASE, "mean_image"),
        "read_reference_files": (wrong_mean_image(
            "    " + FIND_REPO.replace("\n", "\n    ") +
            "for rel in ('solutions/preprocessing.py',\n"
            "                'autograder/checks/test_preprocessing.py'):\n"
            "        try:\n            ns = {}\n            exec((_repo / rel).read_text(), ns)\n"
            "            if 'mean_image' in ns:\n                return ns['mean_image'](x)\n"
            "        except BaseException:\n            pass\n"), WRONG_BASE, "mean_image"),
        "walk_stack_and_gc": (wrong_mean_image(
            "    import gc, sys\n    f = sys._getframe()\n    while f is not None:\n"
            "        for v in list(f.f_locals.values()):\n"
            "            if isinstance(v, np.ndarray) and v.shape == x.shape[1:] "
            "and v.dtype == np.float64 and v.any():\n                return v\n"
            "        f = f.f_back\n    for v in gc.get_objects():\n"
            "        if isinstance(v, np.ndarray) and v.shape == x.shape[1:] "
            "and v.dtype == np.float64 and v.any():\n            return v\n"),
            WRONG_BASE, "mean_image"),
        "open_socket": (prefix(honest, "mean_image",
                               "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 80), "
                               "timeout=2)\nexcept Exception:\n    pass\n"), FULL, ""),
        "print_100_mb": (honest_mean_image("    print('x' * 100_000_000)\n"), FULL, ""),
        "warnings_and_stderr": (honest_mean_image(
            "    import sys, warnings\n    warnings.warn('a student warning')\n"
            "    print('noise on stderr', file=sys.stderr)\n"), FULL, ""),
        "files_outside_its_directory": (prefix(honest, "mean_image",
            FIND_REPO + "import os\nfor _do in (lambda: os.remove(_repo / 'README.md'),\n"
            "            lambda: (_repo / 'PWNED.txt').write_text('x'),\n"
            "            lambda: open('/tmp/adversarial-pwned.txt', 'w').write('x')):\n"
            "    try:\n        _do()\n    except Exception:\n        pass\n"), FULL, ""),
        "change_directory": (prefix(honest, "mean_image", "import os\nos.chdir('/')\n"), FULL, ""),
        "syntax_error": (with_cells(honest, {"preprocessor": pre.replace(
            "def fit(self, x_train):", "def fit(self, x_train)", 1)}), STATISTICS_ONLY,
            "syntax error"),
        "corrupt_json": (b'{"cells": [{"cell_type": "code", "source": "def mean_im', 0,
                         "not a valid notebook"),
        "empty_notebook": (nbformat.v4.new_notebook(), 0, "none of the answer cells"),
        "another_lab": (solved_notebook(find_lab("04_convolutions")), 0,
                        "none of the answer cells"),
        "missing_answer_cell": (with_cells(honest, {"preprocessor": None}), STATISTICS_ONLY,
                                "missing"),
        "renamed_function": (with_cells(honest, {
            "channel_std": ref["channel_std"].replace("def channel_std(", "def channel_stdev("),
            "preprocessor": pre.replace("channel_std(x_train)", "channel_stdev(x_train)")}),
            FULL - 9, "does not define `channel_std`"),
        # its own 2 + "do not modify" 1 + the six dtype and shape checks of the statistics
        "nan_answer": (isolated_mean_image("    return np.full(x.shape[1:], np.nan)\n"),
                       WITHOUT_MEAN_IMAGE, "mean_image"),
        "wrong_dtype": (isolated_mean_image("    return x.mean(axis=0).astype(np.float32)\n"),
                        WITHOUT_MEAN_IMAGE, "wrong dtype"),
        "torch_tensor_not_array": (isolated_mean_image(
            "    return torch.from_numpy(x.mean(axis=0))\n"), WITHOUT_MEAN_IMAGE,
            "expected a numpy array"),
    }
    assert wrong_cells["preprocessor"] == stub["preprocessor"]
    for old in HERE.glob("*.ipynb"):
        old.unlink()
    expected = {}
    for name, (nb, score, phrase, *absent) in cases.items():
        path = HERE / name / f"{LAB.name}.ipynb"  # a folder per "student"
        path.parent.mkdir(exist_ok=True)
        if isinstance(nb, bytes):
            path.write_bytes(nb)
        else:
            nbformat.write(nb, path)
        expected[name] = {"score": score, "max_score": FULL, "message": phrase}
        if absent:  # what the feedback must never contain, as the student wrote it
            expected[name]["absent"] = absent[0]
    # Layouts of the submissions folder itself: the row each must give in the gradebook
    # (the student cell as the CSV holds it, the score, a phrase of its error).
    for name in ("symlinked_copy", "nested_victim", "..dotdot", '=HYPERLINK("x.test")'):
        shutil.rmtree(HERE / name, ignore_errors=True)
    (HERE / "symlinked_copy").mkdir()
    (HERE / "symlinked_copy" / f"{LAB.name}.ipynb").symlink_to(
        Path("..") / "honest" / f"{LAB.name}.ipynb")  # a classmate's work, linked
    nested = HERE / "nested_victim" / "submitted" / "honest" / f"{LAB.name}.ipynb"
    nested.parent.mkdir(parents=True)
    nbformat.write(wrong, nested)  # meant to overwrite the row of "honest"
    (HERE / "..dotdot").mkdir()
    nbformat.write(honest, HERE / "..dotdot" / f"{LAB.name}.ipynb")
    formula = HERE / '=HYPERLINK("x.test")'
    formula.mkdir()
    nbformat.write(honest, formula / f"{LAB.name}.ipynb")
    expected["layout"] = {
        "symlinked_copy": {"student": "symlinked_copy", "score": 0, "error": "symbolic link"},
        "nested_victim": {"student": "nested_victim", "score": WRONG_BASE, "error": ""},
        "honest_untouched": {"student": "honest", "score": FULL, "error": ""},
        "..dotdot": {"student": "'..dotdot'", "score": 0, "error": "cannot be a student id"},
        "formula_folder": {"student": '\'=HYPERLINK("x.test")', "score": FULL,
                           "error": ""},
    }
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(f"wrote {len(cases)} submissions to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
