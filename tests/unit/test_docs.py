"""Documentation matches the code: the configuration reference, and CI's test command."""

from pathlib import Path

from entrypoint.tools import reference

ROOT = Path(__file__).resolve().parents[2]


def test_readme_holds_the_generated_reference():
    readme = (ROOT / "README.md").read_text()
    assert reference.render() in readme, (
        "README.md's configuration reference is out of date: paste the output of "
        "`python -m entrypoint.tools.reference` between its markers")


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "\nmake test\n" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
