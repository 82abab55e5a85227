"""`flowcli predict`: estimate optical flow for a pair, a folder of pairs, a folder of video frames or a video file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import (Backend, BackendOpt, DEFAULTS, DeviceOpt, Dtype, DtypeOpt, FbCheckOpt, Layout, LayoutOpt,
                     OverwriteOpt, PassesOpt, RefineOpt, SintelPass, SintelPassOpt, SmoothOpt, Tta, TtaOpt,
                     WeightsOpt, app, as_flags, cli_errors, err_console, given_flags, inference_options,
                     plural, progress_bar, reuse_freed_memory, say, warn)


@app.command()
def predict(
    ctx: typer.Context,
    input1: Annotated[Path, typer.Argument(metavar="INPUT1", help="First image, or a folder of <id>_img1.* / <id>_img2.* pairs (of video frames with --sequence), "
                                           "a dataset folder (Sintel, KITTI, ... see --layout), a pairs.txt list, "
                                           "or a video file (.mp4, .avi, .mov, .mkv, .webm, .m4v, .gif).")],
    input2: Annotated[Optional[Path], typer.Argument(metavar="INPUT2", help="Second image (omit when INPUT1 is a folder).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", "--out", help="Output .flo or .png (refused if it exists, unless --overwrite); for folder input a folder, "
                                         "which must not hold <id>_flow.* files already unless --overwrite; for a video, "
                                         "such a folder (<frame index>_flow.*) or a .mp4/.mov/.mkv flow video.")] = ...,
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = Dtype.fp32,
    tta: TtaOpt = Tta(DEFAULTS.tta),
    passes: PassesOpt = DEFAULTS.passes,
    smooth: SmoothOpt = DEFAULTS.smooth,
    refine: RefineOpt = DEFAULTS.refine,
    backend: BackendOpt = Backend(DEFAULTS.backend),
    max_side: Annotated[Optional[int], typer.Option(metavar="N", help="Shrink inputs whose longer side exceeds N px (at least 64) for the "
                                                    "network, flow scaled back; also reads images over Pillow's pixel limit.")] = None,
    fmt: Annotated[str, typer.Option("--format", metavar="flo|png", help="For a folder of pairs, or a video's flows written to a folder: flo or png files (one pair: "
                                                                    "the output's suffix says).")] = "flo",
    sequence: Annotated[bool, typer.Option("--sequence", help="Folder mode: the folder holds video frames; "
                                           "write the flow from each frame to the next (frames in name "
                                           "order, frame2 before frame10) as <frame>_flow.<format>.")] = False,
    overwrite: OverwriteOpt = False,
    every: Annotated[Optional[int], typer.Option(metavar="N", help="Video: use every Nth frame (flow from frame t to t+N; default 1).")] = None,
    start: Annotated[Optional[str], typer.Option(metavar="POS", help="Video: first frame, as an index (12) or in seconds (2.5s).")] = None,
    end: Annotated[Optional[str], typer.Option(metavar="POS", help="Video: stop before this frame, as an index or in seconds.")] = None,
    max_flow: Annotated[Optional[float], typer.Option(metavar="PX", help="Video to .mp4 or png: flow magnitude in px shown fully saturated, "
                                                      "one scale for the whole clip (default: the 99th percentile of |flow| over the first 8 flows).")] = None,
    side_by_side: Annotated[bool, typer.Option("--side-by-side", help="Flow video: each input frame on the left of its flow.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also list the steps that run, in order (as info --pipeline).")] = False,
    layout: LayoutOpt = Layout.auto,
    sintel_pass: SintelPassOpt = SintelPass.clean,
    fb_check: FbCheckOpt = False,
    mask: Annotated[Optional[Path], typer.Option("--mask", metavar="FILE", help="Write the occlusion mask PNG (255 = occluded or "
                                                 "unreliable); implies --fb-check. Folder mode writes <id>_occ.png instead.")] = None,
    confidence: Annotated[Optional[Path], typer.Option("--confidence", metavar="FILE", help="Write the confidence in [0, 1] as a "
                                                       "16-bit PNG (65535 = 1); implies --fb-check. Folder mode writes <id>_conf.png.")] = None,
    mask_invalid: Annotated[bool, typer.Option("--mask-invalid", help="Set the pixels that fail the check to unknown (1e10) "
                                               "in the .flo; implies --fb-check.")] = False,
) -> None:
    """Estimate optical flow from INPUT1 to INPUT2 (or between a video's frames) and write it as .flo
    (exact) or .png (colour), or as a colour-coded flow video."""
    with cli_errors(out_of_memory="max_side=N shrinks them for the network"):
        from ..errors import FlowcliError

        options = inference_options(tta, passes, smooth, refine, backend)
        reuse_freed_memory(device)
        if verbose:
            from ..inference.pipeline import describe_pipeline

            for number, line in enumerate(describe_pipeline(options), 1):
                say(f"{number}. {line}", err_console)
        fb_check = fb_check or mask is not None or confidence is not None or mask_invalid
        if verbose and fb_check:
            say("+ the same steps on the pair in reverse, in the same batch; then the forward-backward check", err_console)
        from ..video import is_video

        if is_video(input1) and not input1.is_dir():
            if input2 is not None:
                raise FlowcliError(f"{input2}: {input1} is a video, which takes no second input")
            if fb_check:
                raise FlowcliError("--fb-check (or --mask, --confidence, --mask-invalid): not available for a video "
                                   "input yet; predict its frames as a folder with --sequence and --fb-check")
            _predict_video(input1, output, weights=weights, device=device, dtype=dtype.value, options=options, fmt=fmt,
                           every=1 if every is None else every, start=start, end=end, max_side=max_side,
                           max_flow=max_flow, side_by_side=side_by_side, overwrite=overwrite)
            return
        video_only = [flag for flag, value in (("--every", every), ("--start", start), ("--end", end),
                                              ("--max-flow", max_flow), ("--side-by-side", side_by_side or None))
                      if value is not None]
        if video_only:
            raise FlowcliError(f"{video_only[0]}: applies to a video input ({input1} is not one)")
        if sequence and not input1.is_dir():
            raise FlowcliError(f"{input1}: --sequence needs a folder of video frames")
        listed = input2 is None and input1.is_file() and (input1.suffix.lower() == ".txt" or layout == Layout.list)
        if input1.is_dir() or listed:
            if input2 is not None:
                raise FlowcliError(f"{input2}: {input1} is a folder of pairs, which takes no second input")
            if mask is not None or confidence is not None:
                raise FlowcliError("--mask and --confidence name one pair's files; for a folder, --fb-check "
                                   "writes <id>_occ.png and <id>_conf.png beside each flow")
            from ..inference.predict import predict_folder

            with progress_bar() as bar:
                task = bar.add_task("predict", total=None, info="")
                result = predict_folder(input1, output, weights=weights, device=device, dtype=dtype.value,
                                        options=options, fmt=fmt, sequence=sequence, max_side=max_side,
                                        overwrite=overwrite, layout=layout.value, sintel_pass=sintel_pass.value,
                                        fb_check=fb_check, mask_invalid=mask_invalid,
                                        on_progress=lambda done, total: bar.update(task, completed=done, total=total))
            for line in result.warnings:
                warn(as_flags(line))
            say(f"wrote {plural(result.pairs, 'flow')} to {result.out_dir} in {result.seconds:.1f} s "
                f"({result.pairs_per_s:.3g} pairs/s end to end)")
            return
        if input2 is None:
            raise FlowcliError(f"{input1}: give a second image, or a folder of image pairs")
        if given_flags(ctx, ("fmt",)):
            raise FlowcliError(f"--format {fmt}: for a folder of flows; one pair's format is its output's suffix "
                               f"({output.name})")
        from ..inference.predict import predict_file, predict_file_checked

        if fb_check:
            result = predict_file_checked(input1, input2, output, mask=mask, confidence=confidence,
                                          mask_invalid=mask_invalid, weights=weights, device=device,
                                          dtype=dtype.value, options=options, max_side=max_side, overwrite=overwrite)
        else:
            result = predict_file(input1, input2, output, weights=weights, device=device, dtype=dtype.value,
                                  options=options, max_side=max_side, overwrite=overwrite)
        for line in result.warnings:
            warn(as_flags(line))
        say(f"wrote {result.output} ({result.height}x{result.width}, mean |flow| {result.mean_flow:.2f} px, "
            f"max {result.max_flow:.2f} px)")
        if result.occluded_share is not None:
            say(f"forward-backward check: {100 * result.occluded_share:.1f}% of pixels occluded or unreliable"
                + "".join(f"; wrote {path}" for path in result.written))


def _predict_video(video: Path, output: Path, **kwargs) -> None:
    from ..inference.video import predict_video

    with progress_bar() as bar:
        task = bar.add_task("predict", total=None, info="")
        result = predict_video(video, output, **kwargs,
                               on_progress=lambda done, total: bar.update(task, completed=done, total=total))
    for line in result.warnings:
        warn(as_flags(line))
    rate = f"{result.frames_per_s:.3g} frames/s end to end"
    scale = "" if result.max_flow is None else f"; colour scale {result.max_flow:.2f} px ({as_flags(result.scale_from)})"
    where = f"into {result.output}" if result.to_video else f"to {result.output}"
    say(f"wrote {plural(result.flows, 'flow')} {where} ({result.height}x{result.width}, frames "
        f"{result.first_frame} to {result.first_frame + result.every * result.flows}) in {result.seconds:.1f} s "
        f"({rate}){scale}")
