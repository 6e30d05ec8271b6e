"""General Bots packages on disk: ``name.gbai/`` folders and their ``config.csv``.

A package is read here as plain data (sources and settings); compiling its
dialogs is the pipeline's job.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE_SUFFIX = ".gbai"
_BOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class PackageError(Exception):
    """A bot package cannot be read."""


class BotConfig(Mapping[str, str]):
    """The rows of ``config.csv``, looked up without regard to case or separators.

    General Bots spells keys both ``Theme Color`` and ``theme-color``; both
    find the same row. The original spelling is kept for display.
    """

    def __init__(self, rows: Mapping[str, str] | None = None) -> None:
        self._rows: dict[str, tuple[str, str]] = {}
        for key, value in (rows or {}).items():
            self._rows[_normalize_key(key)] = (key, value)

    def __getitem__(self, key: str) -> str:
        return self._rows[_normalize_key(key)][1]

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._rows.values())

    def __len__(self) -> int:
        return len(self._rows)

    def params(self) -> dict[str, str]:
        """``param-X`` rows as dialog variables: ``param-adminEmail`` becomes ``adminemail``."""
        out: dict[str, str] = {}
        for original, value in self._rows.values():
            if original.lower().startswith("param-") and len(original) > len("param-"):
                out[original[len("param-") :].lower()] = value
        return out

    def integer(self, key: str, default: int) -> int:
        """A row as an integer, ``default`` when absent or not a number."""
        try:
            return int(self.get(key, "").strip())
        except ValueError:
            return default

    def number(self, key: str, default: float) -> float:
        """A row as a float, ``default`` when absent or not a number."""
        try:
            return float(self.get(key, "").strip())
        except ValueError:
            return default

    def as_dict(self) -> dict[str, str]:
        return {original: value for original, value in self._rows.values()}


def valid_bot_name(name: str) -> bool:
    """Whether ``name`` can name a bot, and so a folder: no separators, no dot-dot."""
    return bool(_BOT_NAME.match(name)) and ".." not in name


def _normalize_key(key: str) -> str:
    return re.sub(r"[\s_-]+", "-", key.strip().lower())


def parse_config_csv(text: str) -> BotConfig:
    """Parse a General Bots ``config.csv``: a ``name,value`` header, blank ``,`` separator rows."""
    rows: dict[str, str] = {}
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    for index, row in enumerate(reader):
        if not row or not row[0].strip():
            continue
        key = row[0].strip()
        value = ",".join(row[1:]).strip()
        if index == 0 and key.lower() == "name" and value.lower() == "value":
            continue
        rows[key] = value
    return BotConfig(rows)


@dataclass(frozen=True, slots=True)
class BotPackage:
    """A bot as read from its ``.gbai`` folder."""

    name: str
    path: Path
    config: BotConfig
    dialogs: Mapping[str, str] = field(default_factory=dict)  # lowercased name -> source
    dialog_files: Mapping[str, Path] = field(default_factory=dict)
    # ``name.gbdata/*.csv`` by lowercased file name ("products.csv") -> rows
    data: Mapping[str, list[dict[str, str]]] = field(default_factory=dict)
    # .bas files General Bots does not load (outside a .gbdialog folder, or a second file of
    # the same name), each with the reason
    ignored: tuple[tuple[Path, str], ...] = ()

    @property
    def display_name(self) -> str:
        return self.config.get("bot-name") or self.name

    @property
    def theme_color(self) -> str | None:
        return self.config.get("theme-color") or None

    @property
    def start_dialog(self) -> str:
        return (self.config.get("start-dialog") or "start").removesuffix(".bas").lower()


def package_name(path: Path) -> str:
    """The bot name of a ``name.gbai`` folder."""
    return path.name[: -len(PACKAGE_SUFFIX)]


def load_package(path: Path) -> BotPackage:
    """Read one ``name.gbai`` folder; raise :class:`PackageError` when it is not one."""
    if not path.is_dir() or not path.name.endswith(PACKAGE_SUFFIX):
        raise PackageError(f"{path}: not a .gbai folder")
    name = package_name(path)
    if not valid_bot_name(name):
        raise PackageError(f"{path}: {name!r} is not a valid bot name")
    config_file = path / f"{name}.gbot" / "config.csv"
    try:
        config = parse_config_csv(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        config = BotConfig()
    except (OSError, UnicodeDecodeError) as e:
        raise PackageError(f"{config_file}: {e}") from e
    dialogs: dict[str, str] = {}
    files: dict[str, Path] = {}
    ignored: list[tuple[Path, str]] = []
    for bas in _dialog_files(path, name):
        key = bas.stem.lower()
        if key in files:
            ignored.append((bas, f"a second {bas.name}: {files[key]} is the one loaded"))
            continue
        try:
            dialogs[key] = bas.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise PackageError(f"{bas}: {e}") from e
        files[key] = bas
    loaded = set(files.values())
    ignored += [
        (bas, "not in a .gbdialog folder, so General Bots does not load it")
        for bas in sorted(path.rglob("*.bas"))
        if bas not in loaded
        and not any(part.endswith(".gbdialog") for part in bas.relative_to(path).parts[:-1])
    ]
    data = _read_data(path / f"{name}.gbdata")
    return BotPackage(
        name=name,
        path=path,
        config=config,
        dialogs=dialogs,
        dialog_files=files,
        data=data,
        ignored=tuple(ignored),
    )


def _dialog_files(path: Path, name: str) -> list[Path]:
    """The .bas files General Bots loads: under any ``*.gbdialog`` folder of the package, also
    in subfolders, named by their file name; ``name.gbdialog`` first."""
    folders = sorted(
        (d for d in path.iterdir() if d.is_dir() and d.name.lower().endswith(".gbdialog")),
        key=lambda d: (d.name.lower() != f"{name.lower()}.gbdialog", d.name),
    )
    found: list[Path] = []
    for folder in folders:
        top = sorted(folder.glob("*.bas"))
        deeper = sorted(p for p in folder.rglob("*.bas") if p.parent != folder)
        found += [p for p in top + deeper if p.is_file()]
    return found


def _read_data(folder: Path) -> dict[str, list[dict[str, str]]]:
    """The package's table seeds: each ``.csv`` of the ``.gbdata`` folder."""
    tables: dict[str, list[dict[str, str]]] = {}
    if not folder.is_dir():
        return tables
    for file in sorted(folder.iterdir()):
        if not file.is_file() or file.suffix.lower() != ".csv":
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise PackageError(f"{file}: {e}") from e
        tables[file.name.lower()] = parse_data_csv(text)
    return tables


def parse_data_csv(text: str) -> list[dict[str, str]]:
    """Rows of a ``.gbdata`` CSV: the header row names the columns; values are trimmed.

    Blank lines are skipped, a short row leaves its last columns empty, cells beyond the
    header (and columns with an empty name) are dropped.
    """
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    for record in reader:
        if not any(cell.strip() for cell in record):
            continue
        if header is None:
            header = [cell.strip() for cell in record]
            continue
        row = {
            column: (record[i].strip() if i < len(record) else "")
            for i, column in enumerate(header)
            if column
        }
        rows.append(row)
    return rows


def discover_packages(bots_dir: Path) -> list[Path]:
    """Every ``*.gbai`` folder directly under ``bots_dir``, sorted by name."""
    if not bots_dir.is_dir():
        raise PackageError(f"{bots_dir}: bots folder not found")
    return sorted(p for p in bots_dir.iterdir() if p.is_dir() and p.name.endswith(PACKAGE_SUFFIX))
