"""The documentation is part of the product: the site builds with --strict (a broken link or a missing
page fails), the README stays a short user guide, code never points at README sections, and no docs file
is named after a commit."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docs_site_builds_strict(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    r = subprocess.run([str(mkdocs), "build", "--strict", "-q", "-d", str(tmp_path / "site")], cwd=ROOT,
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "site" / "guide" / "evaluation" / "index.html").exists()
    assert "vadd.bounds.evaluate" in (tmp_path / "site" / "api" / "index.html").read_text()


def test_readme_is_short_and_puts_the_essentials_first():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300, len(lines)
    head = "\n".join(lines[:150])
    for needle in ("## Install", "## The main job", "## Your own data", "## Python API", "## Commands"):
        assert needle in head, needle


def test_code_has_no_readme_pointers_and_docs_no_commit_named_files():
    for path in (ROOT / "src").rglob("*"):
        if path.suffix in (".py", ".yaml"):
            assert "README" not in path.read_text(), path
    for path in (ROOT / "docs").rglob("*"):
        assert not re.search(r"[_-][0-9a-f]{7,40}\.", path.name), path
