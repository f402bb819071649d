"""Report layer: per-check results, per-submission JSON and Markdown feedback,
and the class gradebook.

Feedback gives each check's name, description, points and message; it never
contains a hidden check's code. Files are written to a temporary name and
renamed, so a reader never sees a half-written file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class CheckResult:
    check: str  # the check's name, e.g. test_mean_image_values
    points: float
    earned: float
    message: str = ""  # empty when passed
    description: str = ""  # the check's one-line docstring

    @property
    def passed(self) -> bool:
        return self.earned >= self.points


@dataclass
class SubmissionReport:
    student: str
    lab: str
    path: str
    checks: list[CheckResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # reported, not fatal
    error: str = ""  # set when the submission could not be graded at all
    digest: str = ""  # sha256 of the graded file: a rerun regrades only what changed

    @property
    def score(self) -> float:
        return sum(c.earned for c in self.checks)

    @property
    def max_score(self) -> float:
        return sum(c.points for c in self.checks)

    @property
    def percent(self) -> float:
        return 100.0 * self.score / self.max_score if self.max_score else 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(score=self.score, max_score=self.max_score, percent=round(self.percent, 2))
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SubmissionReport:
        checks = [CheckResult(**c) for c in data.get("checks", [])]
        return cls(
            student=data["student"],
            lab=data["lab"],
            path=data.get("path", ""),
            checks=checks,
            problems=list(data.get("problems", [])),
            error=data.get("error", ""),
            digest=data.get("digest", ""),
        )

    def to_markdown(self) -> str:
        """Feedback for the student: score, problems, and every check with its message."""
        out = [f"# Feedback: {self.lab} ({self.student})", ""]
        if self.error:
            out += ["**This submission could not be graded.**", "", self.error, ""]
            return "\n".join(out)
        out += [f"**Score: {self.score:g} / {self.max_score:g} ({self.percent:.0f}%)**", ""]
        if self.problems:
            out += ["## Problems found in your notebook", ""]
            out += [f"- {p}" for p in self.problems] + [""]
        out += ["## Checks", "", "| check | points | result |", "|---|---|---|"]
        for c in self.checks:
            name = f"`{c.check}`" + (f": {c.description}" if c.description else "")
            result = "passed" if c.passed else "failed"
            out.append(f"| {name} | {c.earned:g} / {c.points:g} | {result} |")
        failed = [c for c in self.checks if not c.passed]
        if failed:
            out += ["", "## What to fix", ""]
            for c in failed:
                out += [f"### `{c.check}`", "", "```", c.message.strip(), "```", ""]
        return "\n".join(out).rstrip() + "\n"


def write_atomic(path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(report: SubmissionReport, out_dir) -> tuple[Path, Path]:
    """Write ``<out>/<student>/<lab>.json`` and ``.md``; return both paths."""
    base = Path(out_dir) / report.student
    json_path, md_path = base / f"{report.lab}.json", base / f"{report.lab}.md"
    write_atomic(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
    write_atomic(md_path, report.to_markdown())
    return json_path, md_path


def read_report(path) -> SubmissionReport | None:
    """One report, or None if it is missing or unreadable (then it is graded again)."""
    try:
        return SubmissionReport.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_reports(out_dir) -> list[SubmissionReport]:
    """Every readable per-submission JSON report under ``out_dir``."""
    reports = [read_report(path) for path in sorted(Path(out_dir).glob("*/*.json"))]
    return [r for r in reports if r is not None]


def gradebook_csv(reports: list[SubmissionReport]) -> str:
    """One row per student and lab, one column per check (points earned)."""
    checks: list[str] = []
    for r in reports:
        for c in r.checks:
            column = f"{r.lab}:{c.check}"
            if column not in checks:
                checks.append(column)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["student", "lab", "score", "max_score", "percent", "error", *checks])
    for r in sorted(reports, key=lambda r: (r.student, r.lab)):
        earned = {f"{r.lab}:{c.check}": f"{c.earned:g}" for c in r.checks}
        writer.writerow(
            [r.student, r.lab, f"{r.score:g}", f"{r.max_score:g}", f"{r.percent:.1f}",
             r.error.replace("\n", " "), *(earned.get(col, "") for col in checks)]
        )
    return buf.getvalue()


def write_gradebook(reports: list[SubmissionReport], path) -> Path:
    write_atomic(path, gradebook_csv(reports))
    return Path(path)
