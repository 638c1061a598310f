"""Devices and precisions: one ``device`` / ``dtype`` option from the command line to the tensors.

CPU paths run here; the CUDA paths are marked ``cuda`` and skipped on machines without a GPU (the
conftest hook), so a GPU machine runs them with plain ``pytest``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from promptlearning.cli import main
from promptlearning.devices import DeviceError, check_device_name, mixed_precision, resolve_device, resolve_dtype
from promptlearning.models import GenerationConfig, load_model
from promptlearning.tasks import load_task

SRC = Path(__file__).resolve().parents[1] / "src" / "promptlearning"
PAIRS = [("the cat sat on the", " mat"), ("the capital of france is", " paris"), ("a dull", " film .")]


def _hard_coded_cpu(tree: ast.AST) -> list[int]:
    """Lines of calls that pin the CPU: ``cpu=True``, ``device="cpu"``, ``torch.device("cpu")``, ``.to("cpu")``.

    Defaults of parameters (``def f(device="cpu")``) are a caller's choice and not calls, so they pass.
    """
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            value = keyword.value
            if isinstance(value, ast.Constant) and (
                (keyword.arg == "cpu" and value.value is True) or (keyword.arg == "device" and value.value == "cpu")
            ):
                lines.append(node.lineno)
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        first = node.args[0] if node.args else None
        if name in ("device", "to") and isinstance(first, ast.Constant) and first.value == "cpu":
            lines.append(node.lineno)
    return lines


def test_no_module_hard_codes_the_cpu():
    found = {
        str(path.relative_to(SRC)): lines
        for path in sorted(SRC.rglob("*.py"))
        if (lines := _hard_coded_cpu(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert found == {}, f"the CPU is pinned (take a `device` option instead): {found}"


def test_the_source_scan_finds_what_it_looks_for():
    code = "Accelerator(cpu=True)\nload(x, device='cpu')\nt.to('cpu')\ntorch.device('cpu')\ndef f(device='cpu'): ..."
    assert _hard_coded_cpu(ast.parse(code)) == [1, 2, 3, 4]


def test_names_resolve_to_what_this_machine_has():
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16
    assert mixed_precision("auto", torch.device("cpu")) == "no"
    assert mixed_precision("bf16", torch.device("cpu")) == "bf16"
    for bad in ("gpu", "cuda:x", "", "CPU"):
        with pytest.raises(DeviceError, match="auto, cpu, cuda, cuda:N or mps"):
            check_device_name(bad)
    with pytest.raises(DeviceError, match="dtype must be one of"):
        resolve_dtype("float8", torch.device("cpu"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_asking_for_a_gpu_that_is_not_here_is_a_clear_error(tiny_llama_dir, capsys):
    with pytest.raises(DeviceError, match="CUDA is not available here"):
        load_model(tiny_llama_dir, device="cuda")
    assert (
        main(["score", "--context", "a", "--choices", " b", "--model", str(tiny_llama_dir), "--device", "cuda:1"]) == 2
    )
    assert "CUDA is not available" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:  # argparse's usage error
        main(["generate", "hi", "--model", str(tiny_llama_dir), "--device", "gpu"])
    assert usage.value.code == 2
    assert "auto, cpu, cuda, cuda:N or mps" in capsys.readouterr().err


def test_dtype_and_device_reach_the_weights(tiny_llama_dir, tiny_mlm_dir, tiny_t5_dir):
    for path in (tiny_llama_dir, tiny_mlm_dir, tiny_t5_dir):
        model = load_model(path, device="cpu", dtype="bfloat16")
        assert model.device == torch.device("cpu")
        assert {p.dtype for p in model.model.parameters()} == {torch.bfloat16}
    assert next(load_model(tiny_llama_dir, dtype="auto").model.parameters()).dtype == torch.float32  # auto on CPU


def test_task_files_and_the_command_line_carry_device_and_dtype(tmp_path, tiny_llama_dir):
    task = tmp_path / "task.yaml"
    task.write_text(
        f"name: t\nmodel: {tiny_llama_dir}\ndata: {{eval: dev.jsonl}}\ndevice: cpu\ndtype: bfloat16\n"
        "template: {input: '{{ text }}'}\nverbalizer: {words: {a: ' a', b: ' b'}}\n"
    )
    config = load_task(task)
    assert (config.device, config.dtype) == ("cpu", "bfloat16")
    assert config.model_options() == {"backend": None, "device": "cpu", "dtype": "bfloat16"}
    assert load_task(task, ["device=cuda:1"]).device == "cuda:1"  # a name; whether it is here is checked at load
    with pytest.raises(Exception, match="device must be auto, cpu, cuda, cuda:N or mps"):
        load_task(task, ["device=gpu"])


# ----------------------------------------------------------------------------- CUDA (skipped without a GPU)


@pytest.mark.cuda
def test_cuda_scores_and_generations_match_the_cpu(tiny_llama_dir):
    cpu = load_model(tiny_llama_dir, device="cpu", dtype="float32")
    gpu = load_model(tiny_llama_dir, device="cuda", dtype="float32")
    assert gpu.device.type == "cuda"
    for a, b in zip(cpu.loglikelihood(PAIRS), gpu.loglikelihood(PAIRS), strict=True):
        assert b.logprob == pytest.approx(a.logprob, abs=1e-3)
    greedy = GenerationConfig(max_new_tokens=8)
    assert [g.text for g in gpu.generate(["the cat sat"], greedy)] == [
        g.text for g in cpu.generate(["the cat sat"], greedy)
    ]
    sampled = GenerationConfig(max_new_tokens=8, temperature=1.0, seed=3)
    [alone] = gpu.generate(["the cat sat"], sampled)
    assert gpu.generate(["the dog", "the cat sat"], sampled)[1] == alone  # generators live on the GPU, per row


@pytest.mark.cuda
def test_cuda_auto_dtype_is_half_precision(tiny_llama_dir):
    model = load_model(tiny_llama_dir, device="cuda")
    assert next(model.model.parameters()).dtype in (torch.bfloat16, torch.float16)
    assert model.loglikelihood(PAIRS)[0].logprob < 0


@pytest.mark.cuda
def test_cuda_training_with_mixed_precision_saves_a_program_that_predicts(tiny_llama_dir, tmp_path):
    from promptlearning.training import ProgramSpec, TrainingArguments, build_program, load_program, train

    rows = [{"text": f"{word} film", "label": label} for word, label in (("great", "pos"), ("awful", "neg"))] * 8
    spec = ProgramSpec(objective="pet", model=str(tiny_llama_dir), template={"input": "{{ text }} :"},
                       verbalizer={"label_words": {"neg": " awful", "pos": " great"}}, peft="lora")  # fmt: skip
    program = build_program(spec)
    args = TrainingArguments(max_steps=4, eval_every=4, batch_size=8, learning_rate=1e-2, log_with=None)
    evaluate = lambda _: {"accuracy": program.evaluate(rows)["accuracy"]}  # noqa: E731
    result = train(program.module, program.encode(rows), program.featurizer.collate, evaluate, args, tmp_path / "run",
                   device="cuda")  # fmt: skip
    assert result.steps == 4 and next(program.module.parameters()).device.type == "cuda"
    program.save(tmp_path / "program")
    restored = load_program(tmp_path / "program", device="cuda")
    assert [p.label for p in restored.predict(rows[:4])] == [p.label for p in program.predict(rows[:4])]


def test_auto_on_a_cpu_is_bf16_where_it_multiplies_bf16_natively(tmp_path, monkeypatch, tiny_llama_dir):
    from promptlearning.devices import CPU_DTYPE_ENV, cpu_has_native_bf16

    cpu = torch.device("cpu")
    native, plain = tmp_path / "native", tmp_path / "plain"
    native.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 avx512_vnni\n")
    plain.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n")
    assert cpu_has_native_bf16(str(native)) and not cpu_has_native_bf16(str(plain))
    assert not cpu_has_native_bf16(str(tmp_path / "missing"))
    monkeypatch.delenv(CPU_DTYPE_ENV)
    expected = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    assert resolve_dtype("auto", cpu) == expected
    assert resolve_dtype("auto", cpu, cpu_bf16=False) == torch.float32  # sentence encoders, trained weights
    assert next(load_model(tiny_llama_dir).model.parameters()).dtype == expected
    monkeypatch.setenv(CPU_DTYPE_ENV, "float32")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16  # an explicit dtype wins
    monkeypatch.setenv(CPU_DTYPE_ENV, "int8")
    with pytest.raises(DeviceError, match="must be float32 or bfloat16"):
        resolve_dtype("auto", cpu)
