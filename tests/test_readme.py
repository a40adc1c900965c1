"""The README's example runs as written (the front door must stay true)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = re.search(r"## Example\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)  # noqa: S102
    acc = scope["net"].evaluate({"x": scope["test"].x, "y": scope["test"].y})["accuracy"]
    assert acc > 0.9
    assert (tmp_path / "digits.gcm").exists()


def test_readme_names_the_two_commands():
    text = README.read_text()
    assert 'pip install -e ".[dev]" && graphc demo' in text
    assert re.search(r"^pytest", text, re.M)
