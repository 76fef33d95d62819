"""Where the files that ship with migrator are: `playbooks/`, `templates/` and `runbooks/`.

In the project's tree they sit at the top, beside `migrator/`; the wheel carries them inside the
package (pyproject.toml maps them to `migrator/playbooks/` ...). Both places are found from
`importlib.resources.files("migrator")`, never from `sys.prefix`, which is wrong for
`pip install --user`, Debian's `/usr/local` and a venv made elsewhere.

A plain function of the installed files: no network, no state.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

SHIPPED = ("playbooks", "templates", "runbooks")


def shipped_dir(name: str) -> Path:
    """The directory `name` (one of SHIPPED) as installed: inside the package (a wheel), else at
    the top of the project's source tree (a checkout, or an editable install of one). When
    neither exists, the packaged path, so the reader's own "file not found" names where it looked."""
    if name not in SHIPPED:
        raise ValueError(f"not a shipped directory: {name}")
    package = files("migrator")
    # Files are read from disk (Jinja2's loader, links in reports): an unpacked install.
    packaged = Path(str(package)) / name
    if packaged.is_dir():
        return packaged
    source_tree = Path(str(package)).parent
    # Only the project's own tree: a stray top-level templates/ in site-packages is someone else's.
    if (source_tree / "pyproject.toml").is_file() and (source_tree / name).is_dir():
        return source_tree / name
    return packaged


def shipped_file(relative: str) -> Path:
    """A shipped file named as the project's texts name it, e.g. `runbooks/seed.md`."""
    top, _, rest = relative.partition("/")
    return shipped_dir(top) / rest


def shown_path(path: Path) -> str:
    """A path as a report shows it: relative when it lies under the working directory (the
    project's tree: `runbooks/switchover.md`), else absolute, so a link always opens from where
    the operator runs `migrate`."""
    absolute = path.absolute()
    try:
        return str(absolute.relative_to(Path(os.getcwd())))
    except ValueError:
        return str(absolute)
