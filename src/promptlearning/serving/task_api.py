"""This project's own endpoints: saved prompt programs, inline prompt classification, and
chain-of-thought with self-consistency. Methods run in a request thread and reach the model
through a :class:`~promptlearning.serving.batching.BatchingModel`, so concurrent requests share
batched model calls."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from promptlearning.serving.errors import APIError
from promptlearning.serving.requests import cancel_event, request_limits, unless_disconnected
from promptlearning.serving.responses import (
    Classification,
    Classifications,
    GeneratedAnswer,
    Generations,
    ProgramCard,
    ProgramList,
    ProgramPrediction,
    ProgramPredictions,
    SolutionBody,
    Solutions,
)
from promptlearning.serving.schemas import ClassifyRequest, GenerateRequest, ProgramPredictRequest, SolveRequest

router = APIRouter()


def _prediction(prediction: Any) -> ProgramPrediction:
    if isinstance(prediction, dict):  # NER: {"tags": [...]}
        return ProgramPrediction(tags=prediction["tags"])
    return ProgramPrediction(label=prediction.label, probabilities=prediction.probabilities)


@router.get("/v1/programs")
async def list_programs(request: Request) -> ProgramList:
    programs = request.app.state.served.programs
    data = [
        ProgramCard(id=name, objective=p.spec.objective, model=p.spec.model, labels=p.labels, inputs=_input_fields(p))
        for name, p in programs.items()
    ]
    return ProgramList(data=data)


def _input_fields(program: Any) -> list[str]:
    from promptlearning.training.program import input_fields

    return input_fields(program.spec)


@router.post("/v1/programs/{name}/predict")
async def program_predict(name: str, body: ProgramPredictRequest, request: Request) -> ProgramPredictions:
    program = request.app.state.served.program(name)
    _check_inputs(request, len(body.inputs))
    fields = _input_fields(program)
    for row, example in enumerate(body.inputs):
        missing = [f for f in fields if f not in example]
        if missing:
            raise APIError(
                400,
                f"inputs[{row}] has no field {missing[0]!r}; program {name!r} reads {fields}",
                param=f"inputs.{row}",
            )
        nulls = [f for f in fields if example[f] is None]
        if nulls:
            raise APIError(400, f"inputs[{row}].{nulls[0]} is null", param=f"inputs.{row}")
    request.state.content = body.inputs
    await run_in_threadpool(_check_program_inputs, request, program, body.inputs)
    future = request.app.state.batcher.submit(
        ("program", name), body.inputs, lambda batch: program.predict(batch), cancel=cancel_event(request)
    )
    predictions = await unless_disconnected(request, asyncio.wrap_future(future))
    out = [_prediction(p) for p in predictions]
    request.state.output = [p.model_dump() for p in out]
    return ProgramPredictions(program=name, predictions=out)


def _check_program_inputs(request: Request, program: Any, inputs: list[dict[str, Any]]) -> None:
    """The server's prompt-length and token limits, on each input as the program renders it (the
    program truncates to its own ``max_length`` too)."""
    count = _program_token_counter(program)
    if count is None:
        return
    from promptlearning.prompts.template import PromptTemplate

    spec = program.spec
    render = PromptTemplate(**spec.template).render_input if spec.objective != "ner" else None
    lengths = []
    for example in inputs:
        text = render(example) if render else " ".join(map(str, example[spec.tokens_field]))
        lengths.append(min(count(text), spec.max_length) if spec.objective != "prompt" else count(text))
    request_limits(request).spend(lengths)


def _program_token_counter(program: Any) -> Any:
    model = getattr(program, "model", None)
    if hasattr(model, "count_tokens"):  # a prompted program: its base model
        return model.count_tokens
    tokenizer = getattr(program, "tokenizer", None)
    if tokenizer is not None:
        return lambda text: len(tokenizer(text, add_special_tokens=True)["input_ids"])
    return None


def _check_inputs(request: Request, count: int) -> None:
    limit = request.app.state.settings.max_inputs
    if count > limit:
        raise APIError(400, f"{count} inputs in one request; the limit is {limit}", param="inputs")


def _classify(model: Any, body: ClassifyRequest, embedder: Any = None) -> list[Any]:
    from promptlearning.methods.spec import build_classifier

    spec = body.classifier_spec()
    if spec.selection == "knn" and embedder is None:
        raise APIError(400, "kNN selection needs an embedding model and this server has none", param="selection")
    classifier = build_classifier(spec, model, embedder=embedder)
    classifier.fit(body.demonstrations)
    return classifier.predict(body.inputs, progress=False)


def _request_models(request: Request, model_name: str | None) -> tuple[str, Any, Any]:
    """The named text model and the server's embedder (or None), each as this request's batching
    view: its calls join other requests' batches, under its limits, abandoned when it goes away."""
    served, batcher = request.app.state.served, request.app.state.batcher
    name, model = served.text_model(model_name)
    batching = served.batching(model, batcher, limits=request_limits(request), cancel=cancel_event(request))
    embedder = None
    if served.embedders:
        _, encoder = served.embedder(None)
        embedder = served.batching(encoder, batcher, limits=batching.limits, cancel=batching.cancel)
    return name, batching, embedder


@router.post("/v1/classify")
async def classify(body: ClassifyRequest, request: Request) -> Classifications:
    name, batching, embedder = _request_models(request, body.model)
    _check_inputs(request, len(body.inputs))
    request.state.content = body.inputs
    predictions = await unless_disconnected(request, run_in_threadpool(_classify, batching, body, embedder))
    out = [
        Classification(label=p.label, probabilities=p.probabilities, label_scores=p.label_scores) for p in predictions
    ]
    request.state.output = [p.label for p in out]
    return Classifications(model=name, predictions=out)


def _generate(model: Any, body: GenerateRequest, max_tokens_limit: int, embedder: Any = None) -> list[GeneratedAnswer]:
    from promptlearning.methods.spec import build_generator

    spec = body.generator_spec()
    if spec.decoding.max_new_tokens > max_tokens_limit:
        raise APIError(
            400, f"max_new_tokens={spec.decoding.max_new_tokens} is over this server's limit of {max_tokens_limit}",
            param="max_new_tokens",
        )  # fmt: skip
    if spec.selection == "knn" and spec.shots and embedder is None:
        raise APIError(400, "kNN selection needs an embedding model and this server has none", param="selection")
    generator = build_generator(spec, model, embedder=embedder).fit(body.demonstrations)
    _, outputs, answers = generator.generate(body.inputs, progress=False)
    return [GeneratedAnswer(answer=a, text=t) for a, t in zip(answers, outputs, strict=True)]


@router.post("/v1/generate")
async def generate(body: GenerateRequest, request: Request) -> Generations:
    name, batching, embedder = _request_models(request, body.model)
    _check_inputs(request, len(body.inputs))
    request.state.content = body.inputs
    limit = request.app.state.settings.max_tokens_limit
    out = await unless_disconnected(request, run_in_threadpool(_generate, batching, body, limit, embedder))
    request.state.output = [g.answer for g in out]
    return Generations(model=name, generations=out)


def _solve(model: Any, body: SolveRequest, max_tokens_limit: int) -> list[Any]:
    from promptlearning.methods.spec import build_solver

    if body.max_new_tokens > max_tokens_limit:
        raise APIError(
            400, f"max_tokens={body.max_new_tokens} is over this server's limit of {max_tokens_limit}",
            param="max_tokens",
        )  # fmt: skip
    questions = [{"question": q} if isinstance(q, str) else q for q in body.questions]
    return build_solver(body.solver_spec(), model).solve(questions, progress=False)


@router.post("/v1/solve")
async def solve(body: SolveRequest, request: Request) -> Solutions:
    served = request.app.state.served
    name, model = served.text_model(body.model)
    settings = request.app.state.settings
    _check_inputs(request, len(body.questions))
    if body.self_consistency > settings.max_n:
        raise APIError(
            400, f"samples={body.self_consistency} is over this server's limit of {settings.max_n}", param="samples"
        )
    request.state.content = body.questions
    batching = served.batching(
        model, request.app.state.batcher, limits=request_limits(request), cancel=cancel_event(request)
    )
    solutions = await unless_disconnected(request, run_in_threadpool(_solve, batching, body, settings.max_tokens_limit))
    out = [_solution(s) for s in solutions]
    request.state.output = [o.answer for o in out]
    return Solutions(model=name, solutions=out)


def _solution(solution: Any) -> SolutionBody:
    extractor = next(iter(solution.answers))  # the first extractor's answer is the answer
    return SolutionBody(
        answer=solution.answers[extractor],
        answers=solution.answers,
        votes=solution.votes[extractor],
        agreement=solution.agreement,
        rationales=solution.rationales,
        generated_tokens=solution.generated_tokens,
    )
