"""``lens-train``: stage-1 and GRPO training, curves, and an LLM export for vLLM.

    lens-train init --qwen QWEN2.5-VL-FOLDER --sam2 sam2_hiera_large.pt --out runs/lens_init
    lens-train stage1 --config config/train_stage1.yaml [--config more.yaml] [--max_steps 10 ...]
    lens-train grpo   --config config/train_grpo.yaml --config config/train_grpo_cpu_tiny.yaml
    lens-train plot RUN_DIR [--out DIR]
    lens-train export-llm CHECKPOINT OUT

Several ``--config`` files are merged in order (later ones win); flags given on the command line
win over every file. Run distributed with ``accelerate launch -m lens_ros.training.cli grpo ...``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from lens_ros.configuration import read_yaml_mappings
from lens_ros.interrupts import run_batch

#: dataclasses parsed by each training subcommand (imported lazily: torch/TRL are slow to load)
STAGES = {"stage1": "LensStage1Config", "grpo": "LensGRPOConfig"}


def make_parser() -> argparse.ArgumentParser:
    """The top-level parser; training flags are parsed from the config dataclasses afterwards."""
    parser = argparse.ArgumentParser(prog="lens-train", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for stage, help_text in (("stage1", "stage 1: train the LENS head on a frozen LLM"),
                             ("grpo", "stage 2: GRPO with mask reward and mask loss")):
        p = sub.add_parser(stage, help=help_text, add_help=False)
        p.add_argument("--config", action="append", default=[], metavar="FILE.yaml",
                       help="YAML file of field values; repeat to merge several (later wins)")
        p.add_argument("-h", "--help", action="store_true", help="list every training flag")
    p = sub.add_parser("init", help="build the LENS starting checkpoint from a Qwen2.5-VL "
                       "Instruct folder and Meta's SAM 2 .pt")
    p.add_argument("--qwen", required=True, help="Hugging Face Qwen2.5-VL Instruct folder")
    p.add_argument("--sam2", required=True, help="official SAM 2 checkpoint (sam2_hiera_large.pt)")
    p.add_argument("--out", required=True, help="output LENS checkpoint directory")
    p.add_argument("--preset", default="lens-3b",
                   help="head, SAM 2 and processing sizes (default lens-3b: SAM 2 Hiera-L)")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    p.add_argument("--seed", type=int, default=0, help="seed of the LENS head initialisation")
    p = sub.add_parser("plot", help="write PNG curves of loss and each reward of a run")
    p.add_argument("run_dir", help="output_dir of a lens-train run (holds metrics.jsonl)")
    p.add_argument("--out", default=None, help="folder for the PNGs (default RUN_DIR/plots)")
    p = sub.add_parser("export-llm", help="save the Qwen2.5-VL part of a LENS checkpoint "
                       "(for vLLM rollouts)")
    p.add_argument("checkpoint", help="LENS checkpoint directory")
    p.add_argument("out", help="output directory (Qwen2.5-VL transformers layout)")
    return parser


def parse_stage_args(stage: str, config_files: list[str], rest: list[str]):
    """(ModelArguments, DataConfig, stage config) from YAML files then command-line flags."""
    from transformers import HfArgumentParser

    from lens_ros.training import configs, grpo_config

    train_cls = (configs.LensStage1Config if stage == "stage1" else grpo_config.LensGRPOConfig)
    parser = HfArgumentParser((configs.ModelArguments, configs.DataConfig, train_cls),
                              prog=f"lens-train {stage}")
    values = read_yaml_mappings(config_files)
    known = {a.dest for a in parser._actions}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown} in {config_files}; see "
                         f"`lens-train {stage} --help`")
    parser.set_defaults(**values)
    if "output_dir" not in values and "--output_dir" not in rest:
        rest = rest + ["--output_dir", f"runs/{stage}"]
    model_args, data_cfg, train_args, extra = parser.parse_args_into_dataclasses(
        args=rest, return_remaining_strings=True)
    if extra:
        raise ValueError(f"unknown flag(s) {extra}; see `lens-train {stage} --help`")
    return model_args, data_cfg, train_args


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lens-train``; SIGINT/SIGTERM end it with 130 (``lens_ros.interrupts``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_batch("lens-train", lambda: _main(argv), "checkpoints so far are in the output "
                     "directory; re-run with --resume_from_checkpoint to go on")


def _main(argv: list[str]) -> int:
    args, rest = make_parser().parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "plot":
        from lens_ros.training.plot import plot_run

        try:
            files = plot_run(args.run_dir, args.out)
        except (FileNotFoundError, ValueError) as err:
            print(f"lens-train plot: {err}", file=sys.stderr)
            return 2
        print(f"wrote {len(files)} plots to {files[-1].parent}")
        return 0
    if args.command == "init":
        from lens_ros.core import CheckpointError
        from lens_ros.training.init_checkpoint import build_init_checkpoint

        try:
            out = build_init_checkpoint(args.qwen, args.sam2, args.out, args.preset, args.dtype,
                                        args.seed)
        except (CheckpointError, ValueError, OSError) as err:
            print(f"lens-train init: {err}", file=sys.stderr)
            return 2
        print(f"wrote {out}")
        return 0
    if args.command == "export-llm":
        from lens_ros.training.runner import export_llm

        print(f"wrote {export_llm(args.checkpoint, args.out)}")
        return 0
    if args.help:
        from transformers import HfArgumentParser

        from lens_ros.training import configs, grpo_config

        cls = configs.LensStage1Config if args.command == "stage1" else grpo_config.LensGRPOConfig
        HfArgumentParser((configs.ModelArguments, configs.DataConfig, cls),
                         prog=f"lens-train {args.command}").print_help()
        return 0
    try:
        model_args, data_cfg, train_args = parse_stage_args(args.command, args.config, rest)
    except (ValueError, OSError, yaml.YAMLError) as err:
        print(f"lens-train {args.command}: {err}", file=sys.stderr)
        return 2
    from lens_ros.training.runner import run

    trainer = run(args.command, model_args, data_cfg, train_args)
    if trainer.accelerator.is_main_process:
        print(f"done: {trainer.state.global_step} steps; checkpoints and metrics in "
              f"{Path(train_args.output_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
