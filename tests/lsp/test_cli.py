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
    assert "precision chosen" in out and "no quantization, as asked; float32: the CPU default" in out


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


def test_the_engine_daemon_parses_its_options_without_the_front_ends_dependencies():
    """`loopcoder engine` (the GPU server) imports neither pygls nor pydantic nor jinja2:
    the front-end subcommands' options are added only when they run. (Found on a GPU
    machine whose environment lacked lsprotocol: the daemon could not start.)"""
    import subprocess
    import sys

    code = ("import sys\n"
            "from loopcoder.lsp.cli import build_parser, _subcommand\n"
            "argv = ['-v', 'engine', '--tensor-parallel', '2', '--device', 'cpu']\n"
            "args = build_parser(_subcommand(argv)).parse_args(argv)\n"
            "assert args.command == 'engine' and args.tensor_parallel == 2\n"
            "print(sorted(m for m in ('pydantic', 'jinja2', 'lsprotocol', 'pygls', 'unidiff') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("command", ["info", "generate", "complete", "lsp", "demo", "engine", "status", "eval", "scaffold",
                                     "review", "hint"])
def test_every_subcommand_has_its_full_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: loopcoder {command}")
    if command in ("scaffold", "review", "hint", "complete"):
        assert "--backend" in out  # the front end's own options, added for it


@pytest.mark.parametrize("raw,expected", [("", 600.0), ("15", 15.0), (" 2.5 ", 2.5), ("0", None), ("-3", None), ("soon", None)])
def test_the_idle_timeout_of_an_editors_engine(monkeypatch, raw, expected):
    """$LOOPCODER_ENGINE_IDLE_TIMEOUT: `loopcoder demo` gives its engine 15 s, so that one
    still loading when the demo ends does not wait 600 s for a client."""
    from loopcoder.engine.errors import InvalidRequestError
    from loopcoder.lsp.features.engine_loading import daemon_idle_timeout

    monkeypatch.setenv("LOOPCODER_ENGINE_IDLE_TIMEOUT", raw)
    if expected is None:
        with pytest.raises(InvalidRequestError, match="LOOPCODER_ENGINE_IDLE_TIMEOUT"):
            daemon_idle_timeout()
    else:
        assert daemon_idle_timeout() == expected
