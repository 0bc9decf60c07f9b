"""danlu synth answers|tasks|docs: training data from a teacher behind an OpenAI-compatible
endpoint. Output is appended as it arrives; run the same command again to resume."""

from __future__ import annotations

import typer

from danlu.cli.data_print import print_summary

synth_app = typer.Typer(help="Generate training data with a teacher model behind any OpenAI-compatible endpoint "
                             "(vLLM, danlu serve, a cloud API). Interrupted? Run the same command again to resume.",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(synth_app, name="synth")


BASE_URL = typer.Option(None, "--base-url", help="Endpoint, e.g. http://127.0.0.1:8000/v1 (env DANLU_SYNTH_BASE_URL or OPENAI_BASE_URL).")
MODEL = typer.Option(None, "--model", "-m", help="Teacher model name (env DANLU_SYNTH_MODEL).")
API_KEY = typer.Option(None, "--api-key", help="API key (env DANLU_SYNTH_API_KEY or OPENAI_API_KEY; local servers: any).")
CONCURRENCY = typer.Option(8, "--concurrency", "-j", help="Requests in flight at once.")
RETRIES = typer.Option(6, "--max-retries", help="Retries per request on 429, 5xx, timeouts (exponential backoff).")
BACKOFF = typer.Option(1.0, "--backoff", help="Seconds before the first retry; doubles each time (the server's Retry-After wins).")
TIMEOUT = typer.Option(120.0, "--timeout", help="Seconds per request.")
TEMPERATURE = typer.Option(0.7, "--temperature", help="Sampling temperature.")
MAX_TOKENS = typer.Option(1024, "--max-tokens", help="Most tokens per reply; replies cut off here are dropped.")
FORMAT = typer.Option("messages", "--format", "-f", help="Output layout: messages, sharegpt, alpaca or prompt_response.")
JSON = typer.Option(False, "--json", help="Print the summary as JSON.")


def _teacher(base_url, model, api_key, concurrency, max_retries, backoff, timeout, temperature, max_tokens):
    from danlu.synth.client import TeacherConfig

    return TeacherConfig(base_url=base_url, model=model, api_key=api_key, concurrency=concurrency,
                         max_retries=max_retries, backoff=backoff, timeout=timeout, temperature=temperature,
                         max_tokens=max_tokens)


@synth_app.command("answers")
def answers(
    prompts: str = typer.Argument(..., help="Prompts: {prompt}, {instruction}, messages ending with a user turn, "
                                            "or whole conversations (their last answer is replaced)."),
    output: str = typer.Option(..., "--output", "-o", help="The output JSONL (appended to; a re-run resumes)."),
    base_url: str = BASE_URL, model: str = MODEL, api_key: str = API_KEY, concurrency: int = CONCURRENCY,
    max_retries: int = RETRIES, backoff: float = BACKOFF, timeout: float = TIMEOUT, temperature: float = TEMPERATURE,
    max_tokens: int = MAX_TOKENS, fmt: str = FORMAT,
    keep_truncated: bool = typer.Option(False, "--keep-truncated", help="Keep answers cut off by --max-tokens."),
    on_bad_row: str = typer.Option("error", "--on-bad-row", help="A row with no prompt: 'error' or 'skip'."),
    as_json: bool = JSON,
):
    """The teacher's answer to every prompt (sequence-level distillation)."""
    from danlu.synth.run import SynthOptions, synth_answers

    opts = SynthOptions(format=fmt, keep_truncated=keep_truncated, on_bad_row=on_bad_row)
    teacher = _teacher(base_url, model, api_key, concurrency, max_retries, backoff, timeout, temperature, max_tokens)
    print_summary(synth_answers(prompts, output, teacher, opts), as_json)


@synth_app.command("tasks")
def tasks(
    seeds: str = typer.Argument(..., help="Seed tasks (alpaca, messages, sharegpt ... or rows with an instruction)."),
    output: str = typer.Option(..., "--output", "-o", help="The output JSONL (appended to; a re-run resumes)."),
    n: int = typer.Option(100, "--num", "-n", help="How many new tasks in the output."),
    per_call: int = typer.Option(5, "--per-call", help="Tasks asked for per request."),
    examples: int = typer.Option(3, "--examples", help="Seed tasks shown per request."),
    similarity: float = typer.Option(0.7, "--similarity", help="Drop a task this similar to an earlier one (0–1)."),
    seed: int = typer.Option(42, "--seed", help="Seed of the choice of examples."),
    base_url: str = BASE_URL, model: str = MODEL, api_key: str = API_KEY, concurrency: int = CONCURRENCY,
    max_retries: int = RETRIES, backoff: float = BACKOFF, timeout: float = TIMEOUT, temperature: float = TEMPERATURE,
    max_tokens: int = MAX_TOKENS, fmt: str = FORMAT, as_json: bool = JSON,
):
    """New instruction/input/output tasks in the style of seed tasks (self-instruct)."""
    from danlu.synth.run import SynthOptions, synth_tasks

    opts = SynthOptions(format=fmt, per_call=per_call, examples=examples, similarity=similarity, seed=seed)
    teacher = _teacher(base_url, model, api_key, concurrency, max_retries, backoff, timeout, temperature, max_tokens)
    print_summary(synth_tasks(seeds, output, teacher, n, opts), as_json)


@synth_app.command("docs")
def docs(
    documents: str = typer.Argument(..., help="A document or a folder of them (.md, .txt, or data files with text)."),
    output: str = typer.Option(..., "--output", "-o", help="The output JSONL (appended to; a re-run resumes)."),
    per_call: int = typer.Option(5, "--per-chunk", help="Question/answer pairs asked for per chunk."),
    chunk_chars: int = typer.Option(2000, "--chunk-chars", help="Characters per document chunk (cut at paragraphs)."),
    similarity: float = typer.Option(0.7, "--similarity", help="Drop a question this similar to an earlier one (0–1)."),
    base_url: str = BASE_URL, model: str = MODEL, api_key: str = API_KEY, concurrency: int = CONCURRENCY,
    max_retries: int = RETRIES, backoff: float = BACKOFF, timeout: float = TIMEOUT, temperature: float = TEMPERATURE,
    max_tokens: int = MAX_TOKENS, fmt: str = FORMAT, as_json: bool = JSON,
):
    """Question/answer pairs grounded in documents."""
    from danlu.synth.run import SynthOptions, synth_docs

    opts = SynthOptions(format=fmt, per_call=per_call, chunk_chars=chunk_chars, similarity=similarity)
    teacher = _teacher(base_url, model, api_key, concurrency, max_retries, backoff, timeout, temperature, max_tokens)
    print_summary(synth_docs(documents, output, teacher, opts), as_json)
