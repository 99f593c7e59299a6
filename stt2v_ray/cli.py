"""`stt2v-ray`: render, validate and inspect StreamingT2V batch runs.

Exit codes: 0 every video ok; 1 some videos failed (see results.parquet); 2 invalid
input (nothing rendered, nothing written).
"""
from __future__ import annotations

import argparse
import sys
import textwrap

from stt2v_ray.config import setting_keys

EXAMPLES = """\
examples:
  stt2v-ray validate manifests/demo.yaml
  stt2v-ray render manifests/demo.yaml --output outputs/demo
  stt2v-ray render s3://bucket/prompts/ --output s3://bucket/runs/1 --set enhance.steps=20
  AWS_ENDPOINT_URL=http://127.0.0.1:9000 stt2v-ray render prompts.parquet --output s3://b/out
"""


def _settings_help() -> str:
    lines = ["run settings (manifest `settings:` mapping, or --set KEY=VALUE):"]
    for key, desc in setting_keys():
        lines.append(f"  {key:<28} " + textwrap.shorten(desc, 90) if desc else f"  {key}")
    return "\n".join(lines)


def _add_input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="prompt manifest (.yaml/.yml/.json) or Parquet dataset (file, directory or URL, s3:// included)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a run setting, e.g. --set enhance.steps=20 (repeatable; keys below)")
    p.add_argument("--storage-option", dest="storage_options", action="append", default=[], metavar="KEY=VALUE",
                   help="fsspec storage option for input and output URLs, e.g. endpoint_url=http://host:9000 "
                        "(default: the standard AWS_* environment variables)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stt2v-ray",
        description="Render long videos from prompts with StreamingT2V, in one process or on a Ray cluster.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    render = sub.add_parser("render", help="render every video of a manifest or dataset",
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            description="Render every video of INPUT into OUTPUT/videos/<id>.mp4, with "
                                        "OUTPUT/results.parquet, OUTPUT/timeline.parquet and OUTPUT/run.json.",
                            epilog=_settings_help() + "\n\n" + EXAMPLES)
    _add_input_args(render)
    render.add_argument("--output", required=True, help="output folder: local path or fsspec URL (s3://bucket/prefix)")
    render.add_argument("--quiet", action="store_true", help="no progress lines")

    validate = sub.add_parser("validate", help="check a manifest or dataset; print every error; exit 2 if any",
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_settings_help())
    _add_input_args(validate)

    sub.add_parser("presets", help="list the model presets and their default settings")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "presets":
        return _presets()

    from stt2v_ray.inputs.errors import InputError
    from stt2v_ray.storage import parse_storage_options

    try:
        options = parse_storage_options(args.storage_options)
    except ValueError as exc:
        print(f"error: --storage-option: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "validate":
            from stt2v_ray.run import load_and_validate

            source, _ = load_and_validate(args.input, args.overrides, options)
            print(f"{args.input}: ok ({source.count()} videos)")
            return 0
        from stt2v_ray.progress import Progress
        from stt2v_ray.run import render

        summary = render(args.input, args.output, args.overrides, options,
                         progress=Progress(quiet=args.quiet) if args.quiet else None)
    except InputError as exc:
        print(f"{args.input}: {len(exc.issues)} error(s):\n{exc}", file=sys.stderr)
        return 2
    print(f"{summary.ok}/{summary.total} videos ok, {summary.failed} failed, {summary.seconds:.1f}s -> {summary.output}")
    return summary.exit_code


def _presets() -> int:
    import json

    from stt2v_ray.presets import PRESETS

    for preset in PRESETS.values():
        print(f"{preset.name}: {preset.description}")
        print(f"  weights: {preset.weights}")
        print(textwrap.indent(json.dumps(preset.defaults, indent=2), "  "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
