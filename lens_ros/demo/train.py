"""The demo recipe's own stages (the LENS stages are ``lens-train stage1|grpo``)::

    python -m lens_ros.demo.train sft  --config config/demo/sft.yaml [--steps 100 ...]
    python -m lens_ros.demo.train mask --config config/demo/mask.yaml [--init RUN/sft/last ...]

``sft`` is the supervised warm-up (answer format, reasoning, grounding) that a from-scratch model
needs; ``mask`` trains the mask head on the frozen LM with the answer box as an extra SAM prompt.
Several ``--config`` files merge in order; ``--field value`` flags win over every file.
A stage continues from the resumable state in its ``--output_dir`` when there is one
(``--resume false`` starts over; ``--stop_after_steps N`` stops after N steps of this call).
"""
from __future__ import annotations

import argparse
import logging
import sys

from lens_ros.configuration import config_from_files_and_flags


def make_parser() -> argparse.ArgumentParser:
    """``sft`` / ``mask`` with their ``--config`` files; field flags are parsed afterwards."""
    parser = argparse.ArgumentParser(prog="python -m lens_ros.demo.train",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    for stage, text in (("sft", "supervised warm-up (lens_ros.demo.sft.SFTConfig)"),
                        ("mask", "mask head with the box prompt "
                                 "(lens_ros.demo.mask_stage.MaskStageConfig)")):
        p = sub.add_parser(stage, help=text)
        p.add_argument("--config", action="append", default=[], metavar="FILE.yaml",
                       help="YAML file of field values; repeat to merge several (later wins)")
    return parser


def stage_config(stage: str, config_files: list[str], rest: list[str]):
    """(config, run function) of ``stage`` from its files and flags."""
    if stage == "sft":
        from lens_ros.demo.sft import SFTConfig, run_sft

        cls, fn = SFTConfig, run_sft
    else:
        from lens_ros.demo.mask_stage import MaskStageConfig, run_mask_stage

        cls, fn = MaskStageConfig, run_mask_stage
    return config_from_files_and_flags(cls, config_files, rest, prog=f"demo.train {stage}"), fn


def main(argv: list[str] | None = None) -> int:
    """Run one stage; returns the exit code (2 for a bad config or a missing input)."""
    args, rest = make_parser().parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg, fn = stage_config(args.stage, args.config, rest)
    except (ValueError, OSError) as err:
        print(f"demo.train {args.stage}: {err}", file=sys.stderr)
        return 2
    try:
        best = fn(cfg)
    except (FileNotFoundError, ValueError) as err:
        print(f"demo.train {args.stage}: {err}", file=sys.stderr)
        return 2
    if best is None:
        print(f"stopped after {cfg.stop_after_steps} steps; the state is in {cfg.output_dir}/"
              "resume.pt: rerun the same command to continue")
    else:
        print(f"done: best checkpoint {best}; metrics and plots in {cfg.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
