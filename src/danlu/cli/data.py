"""danlu data <command>: render (what the trainer sees) and the data workbench — inspect,
validate, clean, dedup, scrub, decontam, split, convert, mix. Each command parses its flags,
calls the function of the same name in danlu.data, and prints its summary table."""

from __future__ import annotations

import json

import typer

from danlu.cli.data_print import print_inspect, print_summary

data_app = typer.Typer(help="Look at and fix training data: render, inspect, validate, clean, dedup, scrub, "
                            "decontam, split, convert, mix; samples (image / speech made by code).",
                       no_args_is_help=True)

OUT_HELP = "Output file (default: next to the input, named INPUT.<command>.jsonl). .jsonl or .json."
BAD_ROW_HELP = "A row that does not parse: 'error' stops with its file:line, 'skip' counts and skips it."
JSON_HELP = "Print the summary as JSON instead of a table."


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


def _list(value: str | None, flag: str, cast=str) -> tuple:
    """'a,b,c' → ('a', 'b', 'c') cast to `cast`; a bad item is a usage error naming the flag."""
    if not value:
        return ()
    try:
        return tuple(cast(v.strip()) for v in value.split(",") if v.strip())
    except ValueError:
        from danlu.errors import UserError

        raise UserError(f"cannot read {value!r} as a comma-separated list of {cast.__name__}", where=flag) from None


TRAINED_OPEN, TRAINED_CLOSE = "⟦", "⟧"  # trained spans when the output has no colour


@data_app.command("render")
def render(
    target: str = typer.Argument(..., help="A run config (.yaml) or a data file."),
    overrides: list[str] = typer.Argument(None, help="Config overrides (with a .yaml target)."),
    model: str = typer.Option(None, "--model", "-m", help="Tokenizer/template to use (default: the config's, or builtin:tiny)."),
    limit: int = typer.Option(3, "--limit", "-n", help="How many samples."),
    as_json: bool = typer.Option(False, "--json", help='One line per sample: {"input_ids": [...], "labels": [...]}.'),
):
    """Show exactly what the trainer will see, trained spans highlighted."""
    from danlu.workbench.render import render_samples, spans

    samples, tok = render_samples(target, model, limit, overrides)
    if as_json:
        for s in samples:
            typer.echo(json.dumps({"input_ids": s.encoded.input_ids, "labels": s.encoded.labels}))
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False)
    plain = console.color_system is None  # piped, a log file, NO_COLOR: colour would be lost; mark in text
    if plain:
        console.print(f"legend: {TRAINED_OPEN}trained (has labels){TRAINED_CLOSE}  not trained", markup=False)
    else:
        console.print("[dim]legend:[/dim] [black on green]trained (has labels)[/black on green]  [dim]not trained[/dim]")
    for s in samples:
        enc = s.encoded
        console.rule(f"{s.where} — {len(enc)} tokens, {enc.num_labels} trained")
        text = Text()
        for trained, ids in spans(enc):
            piece = tok.decode(ids, skip_special_tokens=False)
            if plain:
                text.append(f"{TRAINED_OPEN}{piece}{TRAINED_CLOSE}" if trained else piece)
            else:
                text.append(piece, style="black on green" if trained else "dim")
        console.print(text)


@data_app.command("inspect")
def inspect(
    source: str = typer.Argument(..., help="A data file or folder."),
    fmt: str = typer.Option("auto", "--format", "-f", help="The data format (default: detected)."),
    model: str = typer.Option("builtin:tiny", "--model", "-m", help="Count tokens with this model's tokenizer and chat template."),
    no_tokens: bool = typer.Option(False, "--no-tokens", help="Skip token counting (characters only; faster)."),
    plot: str = typer.Option(None, "--plot", help="Save a histogram of token lengths as this PNG file."),
    token_sample: int = typer.Option(0, "--token-sample", help="Count tokens on this many rows drawn at random (0: every row)."),
    examples: int = typer.Option(2, "--examples", "-n", help="How many example rows to show."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
):
    """Format, rows, fields, roles, token lengths (with a histogram), examples and problems."""
    from danlu.workbench.inspect_rows import inspect_data

    report = inspect_data(source, fmt=fmt, model=None if no_tokens else model, plot=plot, examples=examples,
                          token_sample=token_sample)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        print_inspect(report)


@data_app.command("validate")
def validate(
    source: str = typer.Argument(..., help="A data file or folder."),
    output: str = typer.Option(None, "--output", "-o", help="Also write the problems as JSONL: {where, category, reason}."),
    fmt: str = typer.Option("auto", "--format", "-f", help="The data format (default: detected on the first row)."),
    strict: bool = typer.Option(False, "--strict", help="Exit with status 2 if any problem is found."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Every problem with its file:line and the reason."""
    from danlu.errors import DataError
    from danlu.workbench.validate import validate_data

    def show(p) -> None:
        if not as_json:
            typer.echo(f"{p.where}: {p.reason}")

    summary = validate_data(source, output, fmt=fmt, on_problem=show)
    print_summary(summary, as_json)
    problems = summary.counts["problems"]
    if strict and problems:
        raise DataError(f"{problems} problem(s) found", where=source, hint="each is listed above with its file:line")


@data_app.command("clean")
def clean(
    source: str = typer.Argument(..., help="A data file or folder."),
    output: str = typer.Option(None, "--output", "-o", help=OUT_HELP),
    nfkc: bool = typer.Option(True, "--nfkc/--no-nfkc", help="Unicode NFKC (full-width letters and digits → ASCII)."),
    fold_cjk_punct: bool = typer.Option(False, "--fold-cjk-punct", help="Let NFKC turn ，？！：；（） into ASCII too."),
    html: bool = typer.Option(True, "--html/--no-html", help="Strip HTML tags and decode entities (outside markdown code)."),
    whitespace: bool = typer.Option(True, "--whitespace/--no-whitespace", help="Trailing spaces, blank-line runs, odd spaces."),
    control: bool = typer.Option(True, "--control/--no-control", help="Remove control and zero-width characters."),
    min_chars: int = typer.Option(0, "--min-chars", help="Drop rows with fewer content characters (0: no limit)."),
    max_chars: int = typer.Option(0, "--max-chars", help="Drop rows with more content characters (0: no limit)."),
    lang: str = typer.Option(None, "--lang", help="Keep only rows in these languages: zh,en,ja,ko,ru,other (by script)."),
    fmt: str = typer.Option("auto", "--format", "-f", help="The data format (default: detected)."),
    on_bad_row: str = typer.Option("error", "--on-bad-row", help=BAD_ROW_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """NFKC, whitespace, control characters, HTML; drop empty, too short, too long, other-language rows."""
    from danlu.workbench.clean import CleanOptions, clean_data

    opts = CleanOptions(nfkc=nfkc, fold_cjk_punct=fold_cjk_punct, whitespace=whitespace, control=control, html=html,
                        min_chars=min_chars, max_chars=max_chars, languages=_list(lang, "--lang"))
    print_summary(clean_data(source, output, opts, fmt=fmt, on_bad_row=on_bad_row), as_json)


@data_app.command("dedup")
def dedup(
    source: str = typer.Argument(..., help="A data file or folder."),
    output: str = typer.Option(None, "--output", "-o", help=OUT_HELP),
    threshold: float = typer.Option(0.8, "--threshold", "-t", help="Near-duplicate when the estimated Jaccard similarity of character n-grams is at least this."),
    ngram: int = typer.Option(3, "--ngram", help="Characters per shingle (3 suits Chinese and English; 5 for long English-only text)."),
    num_perm: int = typer.Option(128, "--num-perm", help="MinHash permutations (more: finer similarity, slower)."),
    exact_only: bool = typer.Option(False, "--exact-only", help="Only exact duplicates (after normalisation)."),
    fields: str = typer.Option(None, "--fields", help="Compare only these top-level fields, comma-separated (default: all content)."),
    report: str = typer.Option(None, "--report", help="Write every cluster (kept row, dropped rows, similarity) to this JSON file."),
    on_bad_row: str = typer.Option("error", "--on-bad-row", help=BAD_ROW_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Drop exact and near duplicates (MinHash LSH), keeping the first row of each cluster."""
    from danlu.workbench.dedup import DedupOptions, dedup_data

    opts = DedupOptions(threshold=threshold, ngram=ngram, num_perm=num_perm, near=not exact_only,
                        fields=_list(fields, "--fields"))
    print_summary(dedup_data(source, output, opts, report=report, on_bad_row=on_bad_row), as_json)


@data_app.command("scrub")
def scrub(
    source: str = typer.Argument(..., help="A data file or folder."),
    output: str = typer.Option(None, "--output", "-o", help=OUT_HELP),
    types: str = typer.Option(None, "--types", help="Only these: secret,email,id_card,bank_card,phone,ip (default: all)."),
    allow: list[str] = typer.Option(None, "--allow", help="Keep this address, number or @domain (repeatable; "
                                    "e.g. support@acme.com, @acme.com, 400-800-1234)."),
    allow_file: list[str] = typer.Option(None, "--allow-file", help="A file of such entries, one a line (# comments)."),
    on_bad_row: str = typer.Option("error", "--on-bad-row", help=BAD_ROW_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Replace personal data with <EMAIL>, <PHONE>, <ID_CARD>, <BANK_CARD>, <IP>, <SECRET>; --allow keeps
    the company's own public contacts."""
    from danlu.workbench.pii import allow_list, scrub_data

    print_summary(scrub_data(source, output, kinds=_list(types, "--types"), on_bad_row=on_bad_row,
                             allow=allow_list(allow or [], allow_file or [])), as_json)


@data_app.command("decontam")
def decontam(
    source: str = typer.Argument(..., help="The training data file or folder."),
    against: list[str] = typer.Option(..., "--against", "-a", help="An evaluation or benchmark file (repeatable)."),
    output: str = typer.Option(None, "--output", "-o", help=OUT_HELP),
    ngram: int = typer.Option(13, "--ngram", help="Tokens (words; one per CJK character) in a shared n-gram."),
    min_ngram: int = typer.Option(8, "--min-ngram", help="Eval fields this long but shorter than --ngram are matched whole (0: off)."),
    fields: str = typer.Option(None, "--fields", help="Check only these training fields, comma-separated."),
    report: str = typer.Option(None, "--report", help="Write the dropped rows, the eval row and the shared n-gram to this JSON file."),
    on_bad_row: str = typer.Option("error", "--on-bad-row", help=BAD_ROW_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Drop training rows that share a long n-gram with an evaluation file."""
    from danlu.workbench.decontam import DecontamOptions, decontam_data

    opts = DecontamOptions(ngram=ngram, min_ngram=min_ngram, fields=_list(fields, "--fields"))
    print_summary(decontam_data(source, against, output, opts, report=report, on_bad_row=on_bad_row), as_json)


@data_app.command("split")
def split(
    source: str = typer.Argument(..., help="A data file or folder."),
    output: str = typer.Option(None, "--output", "-o", help="Output folder for train/val/test.jsonl (default: INPUT.split/)."),
    ratios: str = typer.Option("0.8,0.1,0.1", "--ratios", help="train,val,test shares adding up to 1."),
    seed: int = typer.Option(42, "--seed", help="Seed of the shuffle."),
    stratify: str = typer.Option(None, "--stratify", help="Keep the proportions of this field's values in every split."),
    threshold: float = typer.Option(0.8, "--threshold", "-t", help="Near duplicates (as in dedup) stay in one split."),
    exact_only: bool = typer.Option(False, "--exact-only", help="Keep only exact duplicates together."),
    on_bad_row: str = typer.Option("error", "--on-bad-row", help=BAD_ROW_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Train/val/test by ratio, seeded, optionally stratified; near duplicates never straddle splits."""
    from danlu.workbench.dedup import DedupOptions
    from danlu.workbench.split import SplitOptions, split_data

    opts = SplitOptions(ratios=_list(ratios, "--ratios", float), seed=seed, stratify=stratify,
                        group_near=not exact_only, dedup=DedupOptions(threshold=threshold))
    print_summary(split_data(source, output, opts, on_bad_row=on_bad_row), as_json)


@data_app.command("convert")
def convert(
    source: str = typer.Argument(..., help="A data file or folder."),
    to: str = typer.Option(..., "--to", help="Output layout: messages, sharegpt, alpaca, prompt_response, text, prompt, "
                                             "preference, messages_preference, sharegpt_preference, alpaca_preference, "
                                             "kto, messages_kto, classification."),
    from_: str = typer.Option("auto", "--from", help="Input format (default: detected)."),
    output: str = typer.Option(None, "--output", "-o", help=OUT_HELP),
    on_bad_row: str = typer.Option("error", "--on-bad-row", help="A row that cannot be read or converted: 'error' or 'skip'."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Rewrite rows in another layout (alpaca, sharegpt, messages, prompt/response, preference ...)."""
    from danlu.workbench.convert import convert_data

    print_summary(convert_data(source, to, output, from_=from_, on_bad_row=on_bad_row), as_json)


@data_app.command("mix")
def mix(
    sources: list[str] = typer.Argument(..., help="Two or more data files."),
    output: str = typer.Option(..., "--output", "-o", help="The mixed file (.jsonl or .json)."),
    weights: str = typer.Option(None, "--weights", "-w", help="Share of the output per input, e.g. 0.7,0.3."),
    counts: str = typer.Option(None, "--counts", "-c", help="Rows per input, e.g. 8000,2000 (instead of --weights)."),
    total: int = typer.Option(0, "--total", help="Output rows with --weights (default: the most without repeating a row)."),
    seed: int = typer.Option(42, "--seed", help="Seed of the row choice and the interleaving."),
    to: str = typer.Option(None, "--to", help="Convert every row to this layout (inputs of different formats)."),
    on_bad_row: str = typer.Option("error", "--on-bad-row", help=BAD_ROW_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Mix inputs by weights or counts into one file, seeded."""
    from danlu.errors import UserError
    from danlu.workbench.mix import MixOptions, mix_data

    if weights and counts:
        raise UserError("give --weights or --counts, not both")
    opts = MixOptions(weights=_list(weights, "--weights", float), counts=_list(counts, "--counts", int),
                      total=total, seed=seed, to=to)
    print_summary(mix_data(sources, output, opts, on_bad_row=on_bad_row), as_json)


@data_app.command("samples")
def samples(
    kind: str = typer.Argument(..., help="image (colour → class, 32 px PNGs), speech (tone 'words', 8 kHz WAV) or "
                                         "vlm (image questions: the colour of a drawn shape, 56 px PNGs)."),
    output: str = typer.Argument(..., help="Folder to write them into (created)."),
    n: int = typer.Option(0, "-n", help="Images per class / training clips / training rows (default: 20 / 160 / 64)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the drawing."),
):
    """Small image or speech samples made by code, for `stage: classify` on images, `stage: asr` and
    vision-language SFT."""
    from pathlib import Path

    from danlu.data.samples import make_image_samples, make_speech_samples
    from danlu.errors import UserError

    out = Path(output)
    if kind == "image":
        make_image_samples(out, per_class=n or 20, seed=seed)
        typer.echo(f"{out}/images/<class>/*.png (a folder per class) and {out}/labels.jsonl ({{image, label}} rows)")
    elif kind == "speech":
        make_speech_samples(out, n_train=n or 160, seed=seed)
        typer.echo(f"{out}/clips/*.wav and {out}/train.jsonl, {out}/eval.jsonl ({{audio, text}} rows)")
    elif kind == "vlm":
        from danlu.synth.shapes import write_shapes

        files = write_shapes(out, train=n or 64, test=24, seed=seed)
        typer.echo(f"{files['train']}, {files['test']} (messages with an image_url part; images in {out}/images/)")
    else:
        raise UserError(f"unknown sample kind {kind!r}", where="danlu data samples", hint="use image, speech or vlm")
