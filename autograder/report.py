"""Report layer: per-check results, per-submission JSON and Markdown feedback,
and the class gradebook.

Feedback gives each check's name, description, points and message; it never
contains a hidden check's code. Files are written to a temporary name and
renamed, so a reader never sees a half-written file.

Untrusted text stays text. Whatever a student can put in a report (check
messages and the tracebacks in them, problems, errors, student ids taken from
folder names, paths, lab names read back from a file) is, whenever a report is
made, read back or written:

- cleaned (``bound_text``): ANSI escape sequences (CSI, OSC, DCS, ...) and
  control, format (bidi overrides, zero-width) and surrogate characters are
  removed; CR, CRLF and the Unicode line separators become newlines; tabs
  become spaces; in a one-line field (an id, a name, a path) newlines become
  spaces;
- bounded by the table ``Bounds`` below, with a visible
  ``[... N characters cut]`` or ``[... N lines cut]`` where text was cut;
- in the Markdown feedback, inert: a multi-line text sits in a code fence
  longer than any run of backticks in it (CommonMark's rule, so nothing in it
  can close the fence), one-line text has Markdown's metacharacters (and
  ``|`` for the table) backslash-escaped, and ``& < >`` are HTML entities in
  both, so the file is inert shown as HTML too. (The price: a ``<`` inside a
  fence shows as ``&lt;`` in a Markdown viewer.)
- in the gradebook, never a formula: a text cell (student, lab, error,
  sandbox, statuses, the check columns' names) that starts with ``= + - @``
  gets a leading ``'`` (OWASP's rule; tab and CR, the rule's other two, are
  control characters and already removed). The numbers are the grader's own
  and never negative.
- in the JSON reports, the same cleaned and bounded strings, escaped by
  ``json.dumps`` (ASCII only).

Statuses. Each check has a ``status`` (one of ``STATUSES``) and the
``seconds`` it took; ``earned`` is clamped to [0, points] whatever made the
result, so a forged results stream or report earns at most the check's points.
A ``grader_error`` is said to be the grader's fault, never the student's.

The gradebook (``gradebook.csv``) keeps one row per student and lab (a
submission refused or found twice is an error row of its own), with the
columns ``student, lab, score, max_score, percent, error, sandbox, statuses``,
then one column per check, ``<lab>:<check>``, holding the points earned.
``sandbox`` says which isolation layer graded the row (anything but
``bubblewrap`` is weaker and worth a look); ``statuses`` counts the checks by
status, e.g. ``passed:12 failed:3 timeout:1``, so a TA can filter on it. The
status and time of each check are in the JSON reports, not in the gradebook,
whose check columns stay numbers a spreadsheet can add up. Beside it,
``summary.csv`` keeps one row per student and one column per lab, then the
total (``summary_csv``).

Report files: ``<out>/<folder>/<stem>.json`` and ``.md``, where the folder is
the student id and the stem the lab when they are plain file names, else a
slug and a hash (``safe_name``), so a report always lands inside ``<out>``.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import math
import os
import re
import tempfile
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path


@dataclass(frozen=True)
class Limit:
    """How much of one untrusted string is kept: ``chars`` characters in all and
    ``lines`` lines; ``lines=1`` is a one-line field, whose newlines become spaces."""

    chars: int
    lines: int = 1


class Bounds:
    """Every bound on untrusted text, in one table (characters and lines, or as said)."""

    MESSAGE = Limit(4_000, 60)  # a check's message, a traceback in it included
    PROBLEM = Limit(2_000, 30)  # one problem met while loading the notebook
    ERROR = Limit(8_000, 100)  # why a submission could not be graded (may hold a traceback)
    NAME = Limit(100)  # a student id, a lab's or a check's name; also the longest student id
    DESCRIPTION = Limit(300)  # a check's one-line docstring
    PATH = Limit(1_000)  # a submission's path
    SANDBOX = Limit(200)  # which isolation layer graded it, and each thing it enforced
    CSV_TEXT = Limit(500)  # every text cell of the gradebook (one line)
    PROBLEMS = 50  # problems kept per report (the last one kept says how many more there were)
    ENFORCED = 40  # items of ``enforced`` kept
    FEEDBACK_BYTES = 256 * 1024  # a whole Markdown feedback file, in UTF-8


# --- statuses ----------------------------------------------------------------------------------

PASSED = "passed"
FAILED = "failed"  # the check ran and the answer is wrong (or the check raised on it)
TIMEOUT = "timeout"  # the check ran past its time limit
CRASHED = "crashed"  # the student's code ended its process during the check
MISSING_ANSWER = "missing_answer"  # the check needs something the submission does not define
NOT_RUN = "not_run"  # the submission's time limit ran out before the check
GRADER_ERROR = "grader_error"  # the grader failed: never the student's fault
STATUSES = (PASSED, FAILED, TIMEOUT, CRASHED, MISSING_ANSWER, NOT_RUN, GRADER_ERROR)
STATUS_LABELS = {  # as the feedback's table shows them
    PASSED: "passed", FAILED: "failed", TIMEOUT: "timed out", CRASHED: "crashed",
    MISSING_ANSWER: "missing answer", NOT_RUN: "not run", GRADER_ERROR: "grader error",
}  # fmt: skip
TRUSTED_SANDBOX = "bubblewrap"  # the isolation layer that grades without a warning
GRADER_FAULT = "this is the grader's fault, not yours; tell your TA"


# --- untrusted text ----------------------------------------------------------------------------

# Terminal escape sequences, removed whole (their parameters are no text either): CSI
# (colours, cursor moves, clearing the screen), OSC (window titles, hyperlinks) and DCS,
# SOS, PM, APC up to BEL or ST (never past a newline, so a stray one eats one line at
# most), the other two- and three-byte escapes, and the 8-bit forms of the same.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b[\]PX^_][^\x07\x1b\n]*(?:\x07|\x1b\\)?"
    r"|\x1b[ -/]*[0-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|[\x90\x98\x9d\x9e\x9f][^\x07\x1b\x9c\n]*(?:\x07|\x1b\\|\x9c)?"
)
# Everything a terminal or a renderer may take for the end of a line.
_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_INVISIBLE = ("Cc", "Cf", "Cs")  # control, format (bidi, zero-width) and surrogate characters


def _as_text(value) -> str:
    """``value`` as a string: itself, "" for None, else its ``str`` (a forged report may
    hold a number or a list where text belongs)."""
    if isinstance(value, str):
        return value
    return "" if value is None else str(value)


def _visible(text: str) -> str:
    """``text`` without its invisible characters (see ``_INVISIBLE``), newlines and tabs kept."""
    return "\n".join(map(_visible_line, text.split("\n")))


def _visible_line(line: str) -> str:
    """One line without its invisible characters, tabs kept; fast when there are none."""
    if line.isprintable():
        return line
    return "".join(
        ch for ch in line
        if ch.isprintable() or ch == "\t" or unicodedata.category(ch) not in _INVISIBLE
    )  # fmt: skip


def _cut_lines(text: str, max_lines: int) -> str:
    """``text`` in at most ``max_lines`` lines: its first two thirds and its last third (where
    a traceback says what was raised), with a line saying how many lines were cut."""
    lines = text.split("\n")
    if len(lines) <= max_lines:
        return text
    keep = max_lines - 1
    head = (2 * keep + 2) // 3
    tail = lines[len(lines) - (keep - head):] if keep > head else []
    return "\n".join([*lines[:head], f"[... {len(lines) - keep} lines cut]", *tail])


def _cut_chars(text: str, max_chars: int, keep_tail: bool) -> str:
    """``text`` in at most ``max_chars`` characters, the marker ``[... N characters cut]``
    included: its head, or with ``keep_tail`` its first two thirds and its last third."""
    if len(text) <= max_chars:
        return text
    keep = max(0, max_chars - len(f" [... {len(text)} characters cut] "))
    head = keep * 2 // 3 if keep_tail else keep
    marker = f" [... {len(text) - keep} characters cut]"
    if not keep_tail:
        return text[:head] + marker
    return f"{text[:head]}{marker} {text[len(text) - (keep - head):] if keep > head else ''}"


def bound_text(value, limit: Limit) -> str:
    """Untrusted ``value`` as clean text within ``limit`` (see the module docstring).

    Idempotent: bounding a bounded text changes nothing, so a report may be cleaned
    whenever it is made, read back or written.
    """
    text = _as_text(value)
    raw_cap = 8 * limit.chars  # a 256 MiB message is cut before the costlier cleaning
    if len(text) > raw_cap:
        text = (f"{text[:raw_cap // 2]}\n[... {len(text) - raw_cap} characters cut]\n"
                f"{text[len(text) - raw_cap // 2:]}")
    plain = text.isascii() and text.replace("\n", "").replace("\t", "").isprintable()
    if not plain:  # an escape sequence, a line break other than LF, an invisible character
        text = _visible(_LINE_BREAKS.sub("\n", _ANSI.sub("", text)))
    text = text.expandtabs(4)
    if limit.lines == 1:
        return _cut_chars(text.replace("\n", " ").strip(), limit.chars, keep_tail=False)
    return _cut_chars(_cut_lines(text, limit.lines), limit.chars, keep_tail=True)


def _bound_list(values, limit: Limit, count: int, what: str) -> list[str]:
    """The first ``count`` of ``values``, each bounded by ``limit``; when there are more,
    the last one kept says how many ``what`` were cut."""
    values = [values] if isinstance(values, str) else list(values or [])
    if len(values) <= count:
        return [bound_text(v, limit) for v in values]
    kept = [bound_text(v, limit) for v in values[: count - 1]]
    return [*kept, f"[... {len(values) - count + 1} more {what} cut]"]


def _amount(value) -> float:
    """``value`` as an amount of points or seconds: a finite number >= 0 (a small int stays
    an int); 0 for anything else (junk, NaN, infinity, a negative number, -0.0, an int too
    large for a float, which a forged report may hold and ``:g`` would choke on)."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int) and 0 <= value < 2**53:
        return value
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return number if math.isfinite(number) and number > 0 else 0.0


def _status(value, full_points: bool) -> str:
    """``value`` if it is one of ``STATUSES`` (else told from the points: ``passed`` or
    ``failed``); a check that did not earn its points is never ``passed``."""
    status = next((s for s in STATUSES if s == value), "")
    if status == PASSED and not full_points:
        return FAILED
    return status or (PASSED if full_points else FAILED)


# --- Markdown ----------------------------------------------------------------------------------

# Backslash-escaped in one-line text: what makes code spans, emphasis, links, table cells,
# strikethrough and (in Jupyter) math; an underscore only where it could start or end
# emphasis (not inside a word, as in 01_preprocessing). Text never starts a line, so the
# block markers (#, -, +, >, 1.) need no escape; & < > become entities.
_MD_SPECIAL = re.compile(r"[\\`*\[\]|~$]|(?<![^\W_])_|_(?![^\W_])")
_PLAIN_CODE = re.compile(r"[\w.\[\]-]+")  # a check's name, shown as code as it is


def md_text(text: str) -> str:
    """One line of untrusted text as inert inline Markdown (and inert HTML)."""
    text = " ".join(_as_text(text).splitlines())
    return html.escape(_MD_SPECIAL.sub(r"\\\g<0>", text), quote=False)


def md_code(name: str) -> str:
    """A name as inline code when it is a plain identifier, else as escaped text."""
    return f"`{name}`" if _PLAIN_CODE.fullmatch(name) else md_text(name)


def md_block(text: str) -> str:
    """Untrusted text as a fenced code block that nothing in it can close: the fence is
    longer than any run of backticks in the text, and & < > are entities."""
    body = html.escape(_as_text(text).strip(), quote=False)
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{body}\n{fence}"


def _size(lines: list[str]) -> int:
    """Bytes of ``lines`` in UTF-8, joined by newlines."""
    return sum(len(line.encode("utf-8")) + 1 for line in lines)


def _fit(pieces: list[str], budget: int, what: str) -> list[str]:
    """The first ``pieces`` that fit in ``budget`` bytes, each with a blank line after it,
    then, if some did not, a line saying how many ``what`` were cut."""
    kept, used = [], 0
    for i, piece in enumerate(pieces):
        used += _size([piece, ""])
        if used > budget:
            return [*kept, f"[... {len(pieces) - i} {what} cut: a feedback file holds at most "
                           f"{Bounds.FEEDBACK_BYTES // 1024} KiB.]"]
        kept.append(piece)
    return kept


def _sandbox_line(sandbox: str) -> str:
    """One line saying which isolation layer graded the submission; loud unless bubblewrap."""
    if sandbox == TRUSTED_SANDBOX:
        return f"Graded in the {TRUSTED_SANDBOX} sandbox."
    layer = md_text(sandbox) if sandbox else "which one was not recorded"
    return (f"> **Warning: not graded in the {TRUSTED_SANDBOX} sandbox but with weaker "
            f"isolation** ({layer}).")


_FEEDBACK_RESERVE = 4_096  # bytes kept for the section headings and the cut notes


# --- results and reports -----------------------------------------------------------------------


@dataclass
class CheckResult:
    """One check's result, made by the runner or read back from a report.

    Either way ``earned`` is clamped to [0, points], the texts are cleaned and bounded,
    and ``status`` is one of ``STATUSES`` (told from the points when not given).
    """

    check: str  # the check's name, e.g. test_mean_image_values
    points: float
    earned: float
    message: str = ""  # empty when passed
    description: str = ""  # the check's one-line docstring
    status: str = ""  # one of STATUSES; by default passed or failed, told from earned
    seconds: float = 0.0  # time the check took; 0.0 when it did not run

    def __post_init__(self) -> None:
        self.check = bound_text(self.check, Bounds.NAME)
        self.points = _amount(self.points)
        self.earned = min(_amount(self.earned), self.points)
        self.message = bound_text(self.message, Bounds.MESSAGE)
        self.description = bound_text(self.description, Bounds.DESCRIPTION)
        self.status = _status(self.status, self.earned >= self.points)
        self.seconds = _amount(self.seconds)

    @property
    def passed(self) -> bool:
        return self.earned >= self.points


@dataclass
class SubmissionReport:
    """One submission's report; its texts are cleaned and bounded (see the module docstring)."""

    student: str
    lab: str
    path: str
    checks: list[CheckResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # reported, not fatal
    error: str = ""  # set when the submission could not be graded at all
    digest: str = ""  # sha256 of the graded file: a rerun regrades only what changed
    sandbox: str = ""  # the isolation layer that graded it: "bubblewrap", or a weaker fallback
    enforced: list[str] = field(default_factory=list)  # what that layer enforced

    def __post_init__(self) -> None:
        self.student = bound_text(self.student, Bounds.NAME)
        self.lab = bound_text(self.lab, Bounds.NAME)
        self.path = bound_text(self.path, Bounds.PATH)
        self.checks = list(self.checks)
        self.problems = _bound_list(self.problems, Bounds.PROBLEM, Bounds.PROBLEMS, "problems")
        self.error = bound_text(self.error, Bounds.ERROR)
        self.digest = bound_text(self.digest, Bounds.NAME)
        self.sandbox = bound_text(self.sandbox, Bounds.SANDBOX)
        self.enforced = _bound_list(self.enforced, Bounds.SANDBOX, Bounds.ENFORCED, "items")

    @property
    def score(self) -> float:
        return sum(c.earned for c in self.checks)

    @property
    def max_score(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def percent(self) -> float:
        return 100.0 * self.score / self.max_score if self.max_score else 0.0

    def cleaned(self) -> SubmissionReport:
        """A copy cleaned and bounded again, for fields set after the report was made."""
        return replace(self, checks=[replace(c) for c in self.checks])

    def to_dict(self) -> dict:
        data = asdict(self.cleaned())
        data.update(score=self.score, max_score=self.max_score, percent=round(self.percent, 2))
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SubmissionReport:
        """A report read back; older reports (no status, seconds, sandbox) are fine."""
        known = {f.name for f in fields(CheckResult)}
        checks = [CheckResult(**{k: v for k, v in c.items() if k in known})
                  for c in data.get("checks", [])]
        return cls(
            student=data["student"],
            lab=data["lab"],
            path=data.get("path", ""),
            checks=checks,
            problems=data.get("problems", []),
            error=data.get("error", ""),
            digest=data.get("digest", ""),
            sandbox=data.get("sandbox", ""),
            enforced=data.get("enforced", []),
        )

    def to_markdown(self) -> str:
        """Feedback for the student: score, problems, and every check with its message.

        Nothing from the submission can format it (see the module docstring), and the
        whole is at most ``Bounds.FEEDBACK_BYTES``: the table of checks is kept whole
        before the problems and the messages, which are cut last first.
        """
        r = self.cleaned()
        head = [f"# Feedback: {md_text(r.lab)} ({md_text(r.student)})", ""]
        if r.error:
            head += ["**This submission could not be graded.**", "", md_block(r.error)]
            return "\n".join(head) + "\n"
        head += [_sandbox_line(r.sandbox), "",
                 f"**Score: {r.score:g} / {r.max_score:g} ({r.percent:.0f}%)**", ""]
        broken = [c for c in r.checks if c.status == GRADER_ERROR]
        if broken:
            head += [f"> **{len(broken)} of the checks could not be run because the grader "
                     f"failed: {GRADER_FAULT}.**", ""]
        budget = Bounds.FEEDBACK_BYTES - _FEEDBACK_RESERVE - _size(head)
        rows = _fit([_table_row(c) for c in r.checks], budget, "rows of the table")
        budget -= _size(rows)
        problems = _fit([md_block(p) for p in r.problems], budget // 2, "problems")
        budget -= _size(_spaced(problems))
        failed = [_fix_section(c) for c in r.checks if c.status not in (PASSED, GRADER_ERROR)]
        errors = [_fix_section(c) for c in broken]  # first: the TA must see those
        messages = _fit(errors + failed, budget, "checks' messages")
        errors, failed = messages[: len(errors)], messages[len(errors):]

        out = list(head)
        if problems:
            out += ["## Problems found in your notebook", "", *_spaced(problems)]
        out += ["## Checks", "", "| check | points | result |", "|---|---|---|", *rows, ""]
        if failed:
            out += ["## What to fix", "", *_spaced(failed)]
        if errors:
            out += ["## Not graded because of a grader error", "",
                    f"The grader failed on these checks: {GRADER_FAULT}.", "", *_spaced(errors)]
        return "\n".join(out).rstrip() + "\n"


def _spaced(blocks: list[str]) -> list[str]:
    """``blocks`` as lines, each followed by a blank line."""
    return [line for block in blocks for line in (block, "")]


def _table_row(c: CheckResult) -> str:
    """A check's row in the feedback's table: name and description, points, status."""
    name = md_code(c.check) + (f": {md_text(c.description)}" if c.description else "")
    return f"| {name} | {c.earned:g} / {c.points:g} | {STATUS_LABELS[c.status]} |"


def _fix_section(c: CheckResult) -> str:
    """A failed check's heading and its message, fenced."""
    return f"### {md_code(c.check)}\n\n{md_block(c.message)}"


# --- files -------------------------------------------------------------------------------------

# A name used on disk as it is: letters, digits, ". _ - + @" and inner spaces, starting with
# a letter or a digit (so never '.', '..', '-x', or '_', which the hashed names start with).
_PLAIN_FILE_NAME = re.compile(r"[^\W_][\w.@+ -]*(?<![ .])")


def safe_name(name: str) -> str:
    """A file or folder name for ``name`` that stays in the folder it is put in: ``name``
    itself when it is plain (see ``_PLAIN_FILE_NAME``, at most 100 characters), else
    ``_<slug>-<12 hex digits of its sha256>``, which no plain name can be."""
    if _PLAIN_FILE_NAME.fullmatch(name) and len(name) <= Bounds.NAME.chars:
        return name
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:40]
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"_{slug}-{digest}"


def report_paths(out_dir, student: str, lab: str, tag: str = "") -> tuple[Path, Path]:
    """Where ``student``'s report for ``lab`` goes: ``<out>/<folder>/<stem>.json`` and
    ``.md``, inside ``out_dir`` whatever the names (see ``safe_name``). ``tag``, hex
    digits, tells apart the error rows of one student and lab: ``<stem>.<tag>.json``."""
    if not re.fullmatch(r"[0-9a-f]*", tag):
        raise ValueError(f"a report's tag is hex digits, not {tag!r}")
    folder = Path(out_dir) / safe_name(bound_text(student, Bounds.NAME))
    stem = safe_name(bound_text(lab, Bounds.NAME)) + (f".{tag}" if tag else "")
    return folder / f"{stem}.json", folder / f"{stem}.md"


def _umask() -> int:
    """The process's umask, read without changing it (os.umask would, for a moment, for
    every thread: grading writes reports from several)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def write_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename. The file gets the
    mode a plain ``open`` would give it (0666 less the umask), not mkstemp's 0600, so that
    a TA's group can read the reports when the umask says so."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            os.fchmod(f.fileno(), 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(report: SubmissionReport, out_dir, tag: str = "") -> tuple[Path, Path]:
    """Write the report's JSON and Markdown where ``report_paths`` says; return both paths."""
    json_path, md_path = report_paths(out_dir, report.student, report.lab, tag)
    write_atomic(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
    write_atomic(md_path, report.to_markdown())
    return json_path, md_path


def read_report(path) -> SubmissionReport | None:
    """One report, or None if it is missing or unreadable (then it is graded again)."""
    try:
        return SubmissionReport.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def read_reports(out_dir) -> list[SubmissionReport]:
    """Every readable per-submission JSON report under ``out_dir``."""
    reports = [read_report(path) for path in sorted(Path(out_dir).glob("*/*.json"))]
    return [r for r in reports if r is not None]


# --- gradebook ---------------------------------------------------------------------------------

# A cell starting with one of these is a formula to a spreadsheet (OWASP's list, and the
# full-width forms some locales also read as formulas).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def csv_text(value) -> str:
    """An untrusted text cell of the gradebook: one clean, bounded line that a spreadsheet
    never takes for a formula (a leading ``'`` when it starts like one)."""
    cell = bound_text(value, Bounds.CSV_TEXT)
    return "'" + cell if cell.lstrip().startswith(_FORMULA_START) else cell


def status_counts(checks: list[CheckResult]) -> str:
    """How many checks have each status, in ``STATUSES`` order: ``passed:12 failed:3``."""
    counts = Counter(c.status for c in checks)
    return " ".join(f"{status}:{counts[status]}" for status in STATUSES if counts[status])


def gradebook_csv(reports: list[SubmissionReport]) -> str:
    """One row per student and lab, one column per check (points earned); see the module
    docstring for the columns."""
    reports = [r.cleaned() for r in reports]
    checks: list[str] = []
    for r in reports:
        for c in r.checks:
            column = f"{r.lab}:{c.check}"
            if column not in checks:
                checks.append(column)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["student", "lab", "score", "max_score", "percent", "error", "sandbox",
                     "statuses", *map(csv_text, checks)])
    for r in sorted(reports, key=lambda r: (r.student, r.lab, r.path)):
        earned = {f"{r.lab}:{c.check}": f"{c.earned:g}" for c in r.checks}
        writer.writerow(
            [csv_text(r.student), csv_text(r.lab), f"{r.score:g}", f"{r.max_score:g}",
             f"{r.percent:.1f}", csv_text(r.error), csv_text(r.sandbox),
             csv_text(status_counts(r.checks)), *(earned.get(col, "") for col in checks)]
        )  # fmt: skip
    return buf.getvalue()


def summary_csv(reports: list[SubmissionReport]) -> str:
    """One row per student: the points earned in each lab (empty when nothing was
    submitted for it; 0 for a submission that could not be graded), then the total, the
    points of every lab in the batch together, and the percent. Each lab's column says its
    points: ``01_preprocessing (/37)``. A lab missing from a student's row counts 0 in
    their total: it is the course's total, not the mean of what they handed in."""
    reports = [r.cleaned() for r in reports]
    labs = sorted({r.lab for r in reports})
    points = {lab: max(r.max_score for r in reports if r.lab == lab) for lab in labs}
    course_total = sum(points.values())
    earned: dict[str, dict[str, float]] = {}
    for r in reports:
        row = earned.setdefault(r.student, {})
        row[r.lab] = max(row.get(r.lab, 0.0), r.score)  # duplicates are error rows (0)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["student", *(f"{lab} (/{points[lab]:g})" for lab in labs),
                     "total", "max_total", "percent"])
    for student in sorted(earned):
        row = earned[student]
        total = sum(row.values())
        percent = 100 * total / course_total if course_total else 0.0
        writer.writerow([csv_text(student),
                         *(f"{row[lab]:g}" if lab in row else "" for lab in labs),
                         f"{total:g}", f"{course_total:g}", f"{percent:.1f}"])
    return buf.getvalue()


def write_gradebook(reports: list[SubmissionReport], path) -> Path:
    """``path`` (the detailed gradebook) and ``summary.csv`` beside it (a row per student)."""
    path = Path(path)
    write_atomic(path, gradebook_csv(reports))
    write_atomic(path.with_name("summary.csv"), summary_csv(reports))
    return path
