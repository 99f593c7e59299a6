"""`stt2v-ray`: render, validate and inspect StreamingT2V batch runs.

Exit codes: 0 every video ok; 1 some videos failed (see results.parquet); 2 invalid
input, or an output holding the same ids from other settings (nothing rendered);
130/143 stopped by SIGINT/SIGTERM (the tables hold the videos finished so far).
"""
from __future__ import annotations

import argparse
import sys
import textwrap

from stt2v_ray.aliases import FlagConflict, add_flags
from stt2v_ray.cli_inputs import dry_run, open_cli_input
from stt2v_ray.config import setting_keys

EXAMPLES = """\
examples:
  stt2v-ray validate manifests/demo.yaml
  stt2v-ray render manifests/demo.yaml --output outputs/demo
  stt2v-ray render s3://bucket/prompts/ --output s3://bucket/runs/1 --set enhance.steps=20
  AWS_ENDPOINT_URL=http://127.0.0.1:9000 stt2v-ray render prompts.parquet --output s3://b/out

without a manifest (per-video fields from --num-frames, --fps, --seed, --negative-prompt):
  stt2v-ray render --prompt "a cat surfing a wave" --output out/            one video
  stt2v-ray render --prompt "a cat" --prompt "a dog" --num-frames 96 --output out/   one per --prompt
  stt2v-ray render photo.png --prompt "waves" --output out/                 image-to-video
  stt2v-ray render pictures/ --output out/        one video per image (.png .jpg .jpeg .bmp .webp; ids from file names)
  stt2v-ray render s3://bucket/pictures/ --output s3://bucket/runs/2 --set preset=streamingsvd
  stt2v-ray render --dry-run pictures/            the videos and resolved settings, nothing rendered

the original's flags work too (each prints what it stands for):
  stt2v-ray render --input pictures/ --output out/ --num_frames 200 --use_memopt --set preset=streamingsvd
  stt2v-ray render --prompt "..." --num_frames 200 --chunk 24 --overlap 8 --set preset=streamingt2v --output out/
"""


def _settings_help() -> str:
    lines = ["run settings (manifest `settings:` mapping, or --set KEY=VALUE):"]
    for key, desc in setting_keys():
        lines.append(f"  {key:<28} " + textwrap.shorten(desc, 90) if desc else f"  {key}")
    return "\n".join(lines)


def _add_input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", nargs="?", default=None,
                   help="prompt manifest (.yaml/.yml/.json), Parquet dataset, one image, or a folder of images "
                        "(file, directory or URL, s3:// included); leave out to render the --prompt texts")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a run setting, e.g. --set enhance.steps=20 (repeatable; keys below)")
    p.add_argument("--storage-option", dest="storage_options", action="append", default=[], metavar="KEY=VALUE",
                   help="fsspec storage option for input and output URLs, e.g. endpoint_url=http://host:9000 "
                        "(default: the standard AWS_* environment variables)")
    p.add_argument("--allow-image-uri", dest="allow_image_uris", action="append", default=[], metavar="PREFIX",
                   help="also read images under this prefix (repeatable), e.g. https://cdn.example.com/img/ or /data/images; "
                        "by default only paths inside the input's folder are read. Metadata addresses stay refused")
    add_flags(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stt2v-ray",
        description="Render long videos from prompts with StreamingT2V, in one process or on a Ray cluster.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    render = sub.add_parser("render", help="render every video of a manifest, dataset, image, folder or --prompt",
                            usage="stt2v-ray render [INPUT] [--prompt TEXT ...] --output OUTPUT [--set KEY=VALUE ...] "
                                  "[--dry-run] [options]",
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="Render every video of INPUT (or of the --prompt texts) into "
                                        "OUTPUT/videos/<id>.mp4, with OUTPUT/results.parquet, OUTPUT/timeline.parquet "
                                        "and OUTPUT/run.json. Images and folders of images render image-to-video, one "
                                        "video per image; results.parquet then has an `input` column (the image, or "
                                        "the prompt of a --prompt video).",
                            epilog=_settings_help() + "\n\n" + EXAMPLES)
    _add_input_args(render)
    render.add_argument("--output", default=None, help="output folder: local path or fsspec URL (s3://bucket/prefix)")
    render.add_argument("--dry-run", action="store_true",
                        help="print the videos it would make (id, prompt, image, num_frames, fps, seed) and the "
                             "resolved settings; render nothing, start nothing")
    render.add_argument("--quiet", action="store_true", help="no progress lines")
    render.add_argument("--overwrite", action="store_true",
                        help="render every video again, even those OUTPUT/records/ says are done (default: the same "
                             "command resumes: videos recorded ok with the same request and settings are skipped)")
    render.add_argument("--evaluate", action="store_true",
                        help="afterwards compute quality metrics of the ok videos (as `stt2v-ray evaluate OUTPUT`)")
    render.add_argument("--report", action="store_true",
                        help="at the end write OUTPUT/report.html (as `stt2v-ray report OUTPUT`), after --evaluate")

    validate = sub.add_parser("validate", help="check an input (as render takes it); print every error; exit 2 if any",
                              usage="stt2v-ray validate [INPUT] [--prompt TEXT ...] [--set KEY=VALUE ...] [options]",
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_settings_help())
    _add_input_args(validate)

    plan = sub.add_parser("plan", help="predict makespan and GPU-hours of an input on N GPUs; print the pools and --set flags",
                          description="Capacity planner on the cost model the simulation uses (docs/scale.md).")
    plan.add_argument("input", help="prompt manifest or Parquet dataset (as render takes it)")
    plan.add_argument("--gpus", type=int, required=True, help="GPUs of the cluster")
    plan.add_argument("--deadline", default=None, help="also print the smallest N that meets this, e.g. 6h, 90m")
    plan.add_argument("--profile", default=None, help="gpu_profile.py JSON: measured costs, not the A100 defaults")
    plan.add_argument("--order", default="fifo", choices=["fifo", "longest-first"], help="admission order to model")
    plan.add_argument("--json", action="store_true", help="print the plan as JSON")
    plan.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a run setting")
    plan.add_argument("--storage-option", dest="storage_options", action="append", default=[], metavar="KEY=VALUE",
                      help="fsspec storage option for the input URL")

    sub.add_parser("presets", help="list the model presets: components, weight sources, parameter counts, defaults")
    conv = sub.add_parser("convert", help="convert an original checkpoint into this project's layout (safetensors)")
    conv.add_argument("--preset", required=True, help="preset whose streaming checkpoint this is (streamingsvd)")
    conv.add_argument("--input", required=True, help="original checkpoint: .safetensors, or .ckpt/.pkl (read with "
                                                     "weights_only=True)")
    conv.add_argument("--output", required=True, help="output .safetensors file")
    evaluate = sub.add_parser("evaluate", help="quality metrics of every ok video of a finished render",
                              description="Compute MAWE, scene cuts, seam smoothness, appearance drift and (for "
                                          "toy-grammar prompts) prompt adherence for every ok video of OUTPUT; "
                                          "write OUTPUT/metrics.parquet and print a table.")
    evaluate.add_argument("output", help="output folder of a render: local path or fsspec URL")
    evaluate.add_argument("--storage-option", dest="storage_options", action="append", default=[],
                          metavar="KEY=VALUE", help="fsspec storage option, e.g. endpoint_url=http://host:9000")
    report = sub.add_parser("report", help="write OUTPUT/report.html: summary, timeline Gantt chart, utilisation, every video",
                            description="Write OUTPUT/report.html, one self-contained page (plotly and the contact sheets "
                                        "inlined; the players load videos/<id>.mp4 beside it, locally or on S3).")
    report.add_argument("output", help="output folder of a render: local path or fsspec URL")
    report.add_argument("--storage-option", dest="storage_options", action="append", default=[],
                        metavar="KEY=VALUE", help="fsspec storage option, e.g. endpoint_url=http://host:9000")
    train = sub.add_parser(
        "train", help="train the toy preset's models on procedural clips, stage by stage (resumable)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the `toy` preset in the paper's stages: base text-to-video, CAM (base frozen), APM, and the "
                    "2x enhancer. Each stage resumes from OUT/stages/<stage>/checkpoint.safetensors; a finished stage "
                    "writes OUT/weights/ (what the toy preset loads) and OUT/report/ (loss curves, settings, minutes).",
        epilog="examples:\n  stt2v-ray train --out runs/toy --config smoke\n"
               "  stt2v-ray train --out runs/toy --config full --stage base --stage cam\n"
               "  stt2v-ray train --out runs/toy --set base.steps=2000 --set bf16=false\n"
               "  stt2v-ray train --out runs/enh --stage enhancer --set enhancer.init=shipped --rest-from shipped\n"
               "then ship: cp runs/toy/weights/* stt2v_ray/weights/toy/ && cp -r runs/toy/report stt2v_ray/weights/toy/")
    train.add_argument("--out", required=True, help="run folder (checkpoints, loss logs, weights, report)")
    train.add_argument("--config", default="full", choices=["smoke", "full"],
                       help="smoke: a few steps in seconds (tests); full: the run behind the shipped weights")
    train.add_argument("--stage", dest="stages", action="append", choices=["base", "cam", "apm", "enhancer"],
                       help="stage to run (repeatable, run in the paper's order; default: all four)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a training setting, e.g. --set base.steps=2000 or --set seed=1")
    train.add_argument("--max-minutes", type=float, default=None,
                       help="stop each stage after this many minutes at a checkpoint (run again to resume)")
    train.add_argument("--rest-from", default=None, metavar="FOLDER",
                       help="take the stages not run here (not named by --stage) from this export folder, or "
                            "'shipped': their weights are copied into OUT/weights and their report entries "
                            "into OUT/report, so OUT/weights is a whole preset to ship")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "evaluate":
        return _evaluate(args.output, args.storage_options)
    if args.command == "report":
        return _report(args.output, args.storage_options)
    if args.command == "presets":
        return _presets()
    if args.command == "plan":
        return _plan(args)
    if args.command == "convert":
        return _convert(args)
    if args.command == "train":
        from stt2v_ray.train.run import main as train_main

        return train_main(args.out, args.config, args.stages, args.overrides, args.max_minutes, args.rest_from)

    from stt2v_ray.errors import ExecutorStartError, OutputClashError
    from stt2v_ray.inputs.errors import InputError
    from stt2v_ray.models.blocks.weights import MissingWeightsError
    from stt2v_ray.storage import StorageOptionsError, check_storage_options, parse_storage_options, redact_uri

    if args.allow_image_uris:  # a JSON list is a YAML value, whatever characters the prefixes hold
        import json

        args.overrides = args.overrides + [f"inputs.allow_image_uris={json.dumps(args.allow_image_uris)}"]
    try:
        options = parse_storage_options(args.storage_options)
    except ValueError as exc:
        return _fail(exc, prefix="--storage-option: ")
    label = args.input or "--prompt"
    try:
        for uri in (args.input, getattr(args, "output", None)):
            if uri and "://" in uri and options:
                check_storage_options(uri, options)
        label, source, overrides, output = open_cli_input(args, options)
        if args.command == "validate":
            from stt2v_ray.run import load_and_validate

            source, _ = load_and_validate(label, overrides, options, source)
            print(f"{redact_uri(label)}: ok ({source.count()} videos)")
            return 0
        if args.dry_run:
            return dry_run(label, source, overrides, options, output)
        if output is None:
            return _fail(ValueError("render needs --output (a folder or URL)"))
        from stt2v_ray.progress import Progress
        from stt2v_ray.run import render

        summary = render(label, output, overrides, options,
                         progress=Progress(quiet=args.quiet) if args.quiet else None, source=source,
                         overwrite=args.overwrite)
    except (FlagConflict, StorageOptionsError, InputError, MissingWeightsError, ExecutorStartError,
            OutputClashError) as exc:
        return _fail(exc, label)
    notes = [f"{summary.skipped} skipped (done before)"] if summary.skipped else []
    if summary.missing:
        notes.append(f"{summary.missing} not rendered yet (run the same command again to resume)")
    if summary.interrupted:
        notes.append(f"stopped by {summary.interrupted}")
    print(f"{summary.ok}/{summary.total} videos ok, {summary.failed} failed" + "".join(f", {n}" for n in notes)
          + f", {summary.seconds:.1f}s -> {redact_uri(summary.output)}")
    if args.evaluate and summary.ok:
        code = _evaluate(output, args.storage_options)
        if code:
            return code
    if args.report:
        code = _report(output, args.storage_options)
        if code:
            return code
    return summary.exit_code


def _fail(exc: Exception, label: str | None = None, prefix: str = "") -> int:
    """Print an expected failure (input, settings, weights, storage, cluster) without a traceback; exit code 2.

    Input errors list every issue under the input's (redacted) name; the rest are one line.
    """
    from stt2v_ray.errors import ExecutorStartError
    from stt2v_ray.inputs.errors import InputError
    from stt2v_ray.storage import redact_uri

    if isinstance(exc, InputError):
        print(f"{redact_uri(label or '--prompt')}: {len(exc.issues)} error(s):\n{exc}", file=sys.stderr)
    elif isinstance(exc, ExecutorStartError):
        print(f"error: could not start the executor, nothing was rendered: {exc}", file=sys.stderr)
    else:
        print(f"error: {prefix}{exc}", file=sys.stderr)
    return 2


def _evaluate(output: str, storage_options: list[str]) -> int:
    """Print the metrics table of a finished render and write OUTPUT/metrics.parquet (exit 2: no run there)."""
    from stt2v_ray.metrics.evaluate import evaluate_run, format_table
    from stt2v_ray.storage import join_uri, parse_storage_options

    try:
        table = evaluate_run(output, parse_storage_options(storage_options))
    except ValueError as exc:
        return _fail(exc)
    print(format_table(table))
    print(f"{table.num_rows} videos evaluated -> {join_uri(output, 'metrics.parquet')}")
    return 0


def _report(output: str, storage_options: list[str]) -> int:
    """Write OUTPUT/report.html (exit 2: no render there, or bad storage options)."""
    from stt2v_ray.report import write_report
    from stt2v_ray.storage import parse_storage_options

    try:
        uri = write_report(output, parse_storage_options(storage_options))
    except ValueError as exc:
        return _fail(exc)
    print(f"report -> {uri}")
    return 0


def _plan(args) -> int:
    from stt2v_ray.cli_plan import run_plan
    from stt2v_ray.inputs.errors import InputError
    from stt2v_ray.storage import parse_storage_options

    try:
        return run_plan(args, parse_storage_options(args.storage_options))
    except (InputError, ValueError) as exc:
        return _fail(exc, args.input)


def _presets() -> int:
    import json

    from stt2v_ray.presets import PRESETS

    for preset in PRESETS.values():
        print(f"{preset.name}: {preset.description}")
        print(f"  weights: {preset.weights}")
        counts = _parameter_counts(preset.name)
        for src in preset.sources:
            where = (src.hub_id or "no hub copy") + (f" file {src.filename}" if src.filename else " (diffusers repo)")
            print(f"  component {src.component}: {where}; setting {src.setting}; {src.description}")
            for model, n in counts.get(src.component, {}).items():
                print(f"    {model}: {n:,} parameters (meta device, full size)")
        for note in preset.notes:
            print(f"  note: {note}")
        print(textwrap.indent(json.dumps(preset.defaults, indent=2), "  "))
    return 0


def _parameter_counts(name: str) -> dict:
    if name == "streamingsvd":
        from stt2v_ray.models.svd.streamingsvd import parameter_counts
        from stt2v_ray.video.ema_vfi import interpolator_parameter_counts

        return {**parameter_counts(), **interpolator_parameter_counts()}
    if name == "streamingt2v":
        from stt2v_ray.models.modelscope.streamingt2v import parameter_counts

        return parameter_counts()
    return {}


def _convert(args) -> int:
    from stt2v_ray.models.blocks.checkpoint import UnsafeCheckpointError
    from stt2v_ray.models.convert import convert_file

    try:
        written, unplaced = convert_file(args.preset, args.input, args.output)
    except (UnsafeCheckpointError, FileNotFoundError, ValueError) as exc:
        return _fail(exc)
    print(f"{args.output}: {written} tensors written")
    for key in unplaced:
        print(f"  could not place: {key}", file=sys.stderr)
    if unplaced:
        print(f"error: {len(unplaced)} key(s) could not be placed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
