"""What ``botserver check`` finds in a dialog or a package, before anything runs.

Errors are what fails at load or run time (syntax, unknown functions, wrong argument counts,
schedules that cannot be read).  Warnings are what General Bots tolerates but will not do
what it says: ``USE TOOL``/``CALL`` naming something the package lacks, ``.bas`` files it does
not load, a package without dialogs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from basic import BasicSyntaxError
from basic.analysis import Analysis, analyze
from basic.errors import BasicWarning
from basic.parser import parse
from config.packages import BotPackage


@dataclass(slots=True)
class CheckReport:
    """Every error and warning of the dialogs checked, as ``file:line:col: ...`` lines."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def extend(self, other: CheckReport) -> None:
        self.errors += other.errors
        self.warnings += other.warnings

    def lines(self) -> list[str]:
        """Errors and warnings together, in file and line order."""
        return sorted(self.errors + self.warnings, key=_position)


def _position(line: str) -> tuple[str, int, int]:
    parts = line.split(":", 3)
    try:
        return parts[0], int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return parts[0], 0, 0


def _analyze(source: str, filename: str) -> tuple[list[BasicSyntaxError], Analysis]:
    module, errors = parse(source, filename)
    analysis = analyze(module)
    seen = {(e.line, e.column) for e in errors}
    errors = errors + [e for e in analysis.errors if (e.line, e.column) not in seen]
    return sorted(errors, key=lambda e: (e.line, e.column)), analysis


def check_dialog(source: str, filename: str) -> CheckReport:
    """One ``.bas`` file on its own: its errors and the warnings of its analysis."""
    errors, analysis = _analyze(source, filename)
    return CheckReport([str(e) for e in errors], [str(w) for w in analysis.warnings])


def check_package(package: BotPackage) -> CheckReport:
    """Every dialog of the package, plus what only the whole package tells: references to
    tools and dialogs it lacks, files General Bots would not load, no dialogs at all."""
    report = CheckReport()
    analyses: dict[str, Analysis] = {}
    broken: set[str] = set()
    tools: set[str] = set()
    for name, source in package.dialogs.items():
        filename = str(package.dialog_files.get(name, f"{name}.bas"))
        errors, analysis = _analyze(source, filename)
        analyses[filename] = analysis
        report.errors += [str(e) for e in errors]
        report.warnings += [str(w) for w in analysis.warnings]
        if errors:
            broken.add(name)
        elif analysis.params or analysis.description is not None:  # as basic.tools.is_tool
            tools.add(name)
    for filename, analysis in analyses.items():
        report.warnings += [str(w) for w in _missing(filename, analysis, package, tools, broken)]
    for path, reason in package.ignored:
        report.warnings.append(f"{path}:1:1: warning: ignored: {reason}")
    if not package.dialogs:
        report.warnings.append(
            f"{package.path}:0:0: warning: no dialogs: General Bots loads the .bas files of "
            f"the package's .gbdialog folders ({package.name}.gbdialog/start.bas runs first)"
        )
    return report


def _missing(
    filename: str, analysis: Analysis, package: BotPackage, tools: set[str], broken: set[str]
) -> Iterable[BasicWarning]:
    for ref in analysis.references:
        if ref.kind == "tool" and ref.name not in tools:
            if ref.name in broken:
                why = f"{ref.name}.bas has errors"
            elif ref.name in package.dialogs:
                why = f"{ref.name}.bas has no PARAM or DESCRIPTION lines, so it is not a tool"
            else:
                why = f"the package has no {ref.name}.bas"
            yield BasicWarning(
                filename, ref.line, ref.column, f"tool {ref.name!r} is not available: {why}"
            )
        elif ref.kind == "dialog" and ref.name not in package.dialogs:
            yield BasicWarning(
                filename,
                ref.line,
                ref.column,
                f"CALL {ref.name + '.bas'!r}: the package has no such dialog",
            )
        elif ref.kind == "dialog" and ref.name in broken:
            yield BasicWarning(
                filename, ref.line, ref.column, f"CALL {ref.name + '.bas'!r}: it has errors"
            )


def check_path(path: Path) -> CheckReport:
    """A ``.bas`` file (its own checks only)."""
    return check_dialog(path.read_text(encoding="utf-8"), str(path))
