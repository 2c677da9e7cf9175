"""The README a newcomer reads in five minutes, links that resolve, and docs that describe the project as it is."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_is_short_and_holds_the_two_set_up_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    block = text.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()  # the set-up block: install, then test
    assert len(block) == 2 and "pip install torch==2.13.0" in block[0] and "python -m pytest" in block[1]
    assert block[0] in ci and block[1] in ci  # CI runs exactly these two


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://")) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken


def test_no_development_history_in_the_project():
    """Issue numbers and work periods belong in git log, not in the files."""
    pattern = re.compile(r"\b(session \d+|issue #?\d+|round \d+)\b|(?<![\w/&])#\d{2,5}\b", re.IGNORECASE)
    files = [*PAGES, *ROOT.glob("configs/**/*.yaml"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("benchmarks/*.sh"),
             *(path for folder in ("preciseinv", "callbacks", "datamodules", "tests", "notebooks")
               for path in ROOT.glob(f"{folder}/**/*.py")), *ROOT.glob("notebooks/*.ipynb")]
    found = [f"{path.relative_to(ROOT)}:{n}" for path in files
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found
