"""The README's Python example runs as written."""

import re
from pathlib import Path

from digits import on_paper

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_examples_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    [training] = [b for b in blocks if "train_and_evaluate" in b]
    [reading] = [b for b in blocks if "Recognizer" in b]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(training, "README.md", "exec"), namespace)
    assert namespace["X"].shape == (5000, 400)
    assert 0.8 < namespace["result"].metrics.accuracy <= 1
    assert (tmp_path / "runs" / "mine" / "model.pt").is_file()

    on_paper([7], paper=(250, 236, 140)).save(tmp_path / "photo.jpg", quality=60)
    on_paper([2, 0, 2, 6], k=5).save(tmp_path / "number.png")
    namespace = {}
    exec(compile(reading, "README.md", "exec"), namespace)
    assert namespace["answer"].digit == 7
    assert namespace["reading"].number == "2026"
