"""The README's Python example runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_example_runs(tmp_path, monkeypatch):
    [code] = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["X"].shape == (5000, 400)
    assert 0.8 < namespace["result"].metrics.accuracy <= 1
    assert (tmp_path / "runs" / "mine" / "model.pt").is_file()
