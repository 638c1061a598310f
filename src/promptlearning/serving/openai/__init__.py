"""The OpenAI-compatible endpoints, one module per endpoint group (as vLLM's entrypoints are laid out):
completions (with ``echo`` + ``logprobs`` as lm-evaluation-harness reads them), chat completions,
models and embeddings, and vLLM's tokenizer endpoints; ``generation`` holds what they share."""

from fastapi import APIRouter

from promptlearning.serving.openai import chat, completions, embeddings, tokens

router = APIRouter()
for module in (completions, chat, embeddings, tokens):
    router.include_router(module.router)
