"""The README's tour runs as written."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_starts_with_the_two_commands():
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    assert blocks[0].strip() == "pip install torch==2.13.0 && pip install -e . && geoalign figures"
    assert blocks[1].strip() == 'pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest'
    ci = (README.parent / ".ci" / "run").read_text()
    assert "README.md" in ci and "eval" in ci


def test_readme_tour_runs(capsys):
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    exec(compile(code, "README-tour", "exec"), {})
    assert capsys.readouterr().out.strip()


def test_readme_images_are_generated_figures():
    from geoalign.figures import load_all

    names = set(load_all())
    images = re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", README.read_text())
    assert images
    for img in images:
        assert Path(img).stem in names, f"README shows {img}, which geoalign figures does not make"
        assert (README.parent / img).exists(), f"{img} is not committed"
