"""The `loopcoder` command line, in process, on the real default model."""

import pytest

from loopcoder.lsp.cli import main

ROOT_CONFIG = "docs/examples/iquest-coder-40b-loop.config.json"


def test_info_from_a_config_alone(capsys):
    from pathlib import Path

    assert main(["info", "--config", str(Path(__file__).resolve().parents[2] / ROOT_CONFIG)]) == 0
    out = capsys.readouterr().out
    assert "80 x 2 loops, window 64" in out and "655,360" in out  # 2 loops * 80 layers * 8 heads * 128 * 2 * 2 B


@pytest.mark.slow
def test_info_default_model(capsys):
    assert main(["info", "--quant", "none"]) == 0
    out = capsys.readouterr().out
    assert "llama" in out and "134,515,008" in out and "46,080" in out


@pytest.mark.slow
def test_complete_prints_a_completion(tmp_path, capsys):
    src = tmp_path / "add.py"
    src.write_text('def add(a: int, b: int) -> int:\n    """Return a + b."""\n    return \n')
    assert main(["complete", str(src), "--line", "3", "--col", "12", "--max-tokens", "8", "--quant", "none"]) == 0
    captured = capsys.readouterr()
    assert "a + b" in captured.out
    assert "prompt tokens" in captured.err


@pytest.mark.parametrize(
    "argv,message",
    [
        (["complete", "{missing}", "--line", "1", "--col", "1"], "cannot read"),
        (["complete", "{file}", "--line", "9", "--col", "1"], "line 9 is outside the document"),
        (["complete", "{file}", "--line", "1", "--col", "40"], "column 40 is outside line 1"),
        (["info", "--model", "{missing}"], "does not exist"),
        (["info", "--config", "{file}"], "not valid JSON"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, message):
    f = tmp_path / "x.py"
    f.write_text("x = 1\n")
    argv = [a.format(file=f, missing=tmp_path / "nope") for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("loopcoder: error:") and message in err and err.count("\n") == 1
