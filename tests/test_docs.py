"""Pages cannot drift from the code: every cog block in README.md and docs/ must be up to date."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_generated_parts_of_readme_and_docs_are_current():
    pages = ["README.md", *sorted(glob.glob(os.path.join("docs", "*.md"), root_dir=ROOT))]
    result = subprocess.run([sys.executable, "-m", "cogapp", "--check", "-I", ".", *pages],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (
        f"stale generated text (run `make docs`):\n{result.stdout}{result.stderr}")


def test_make_help_lists_every_target_the_readme_names():
    result = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    import re
    for target in set(re.findall(r"make ([a-z][a-z0-9-]+)", readme)):
        assert f"make {target} " in result.stdout, f"README names `make {target}`, make help does not"


def test_code_passes_lint():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"`make lint` fails:\n{result.stdout}{result.stderr}"


def test_relative_links_in_readme_and_docs_resolve():
    import re
    pages = ["README.md", *glob.glob("docs/*.md", root_dir=ROOT)]
    broken = []
    for page in pages:
        with open(os.path.join(ROOT, page)) as f:
            text = f.read()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if "://" in target or target.startswith(("#", "mailto:")):
                continue
            path = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), target.split("#")[0]))
            if not os.path.exists(path):
                broken.append(f"{page}: {target}")
    assert not broken, f"links to files that do not exist: {broken}"


# -- Every lesson page shows at least one picture drawn from its recorded run ------------------------

LESSON_PAGES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "docs", "[0-9][0-9]-*.md")))


@pytest.mark.parametrize("page", LESSON_PAGES)
def test_lesson_page_embeds_a_picture_of_its_recorded_run(page):
    import re
    with open(os.path.join(ROOT, "docs", page)) as f:
        text = f.read()
    images = re.findall(rf"!\[[^\]]+\]\((results/lessons/{page[:2]}-[a-z0-9_-]+\.png)\)", text)
    assert images, f"docs/{page} embeds no picture: add a docsync.picture() cog block"
    for image in images:
        assert os.path.exists(os.path.join(ROOT, "docs", image)), f"docs/{page}: {image} missing (make docs)"
