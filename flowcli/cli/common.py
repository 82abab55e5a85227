"""What every command shares: the app, its consoles, options defined once, errors as one line,
progress bars, tables and JSON output. Heavy imports (torch) stay inside the commands."""

from __future__ import annotations

import json
import re
import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..data.layouts import AUTO, LAYOUTS
from ..data.layouts.sintel import PASSES as SINTEL_PASSES
from ..data.splits import SCHEMES
from ..inference.options import BACKENDS, TTA_VIEWS, InferenceOptions
from ..training.config import ARCHS, LOSSES, MOTIONS as TRAIN_MOTIONS, PRESETS, UPSAMPLERS

try:  # typer >= 0.29 carries its own copy of click
    from typer._click.exceptions import ClickException
except ImportError:  # older typer runs on click
    from click.exceptions import ClickException


class OneLineErrors(typer.core.TyperGroup):
    """Usage errors (an unknown choice, a missing argument) as one line, like every other error."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        for stream in (sys.stdout, sys.stderr):  # a file name that is not valid UTF-8 prints escaped
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(errors="backslashreplace")
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # plain `flowcli`: the help, as before
                exc.show()
                raise SystemExit(exc.exit_code) from None
            where = f" (see {exc.ctx.command_path} --help)" if getattr(exc, "ctx", None) is not None else ""
            message = exc.format_message().replace("Value error, ", "")  # the validator's prefix says nothing
            _print_error(f"{message}{where}")
            raise SystemExit(exc.exit_code) from None
        except typer.Abort:
            _print_error("aborted")
            raise SystemExit(1) from None
        raise SystemExit(code or 0)


# Plain help (rich_markup_mode=None): the rich layout printed a <bool> metavar beside every flag.
app = typer.Typer(cls=OneLineErrors, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None)
out_console = Console()
err_console = Console(stderr=True)

# Options that mean the same thing in several commands, defined once.
DeviceOpt = Annotated[str, typer.Option("--device", "-d", metavar="DEVICE", help="cpu, cuda, cuda:N, or auto (CUDA when present).")]
WeightsOpt = Annotated[Optional[str], typer.Option(
    "--weights", "-w", metavar="FILE|NAME", help="Weights .safetensors, or a shipped network: 'fast' (the default) or 'accurate' (the wide network: lower error, ~2x the CPU time); 'random': untrained, of the fast network's architecture, for smoke tests.")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Refuse a folder with incomplete triplets (default: warn and skip them).")]
JsonOpt = Annotated[Optional[Path], typer.Option("--json", metavar="FILE", help="Also write the results as JSON to FILE.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]


class Dtype(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


DtypeOpt = Annotated[Dtype, typer.Option("--dtype", help="Precision: fp16 needs CUDA; bf16 needs CUDA or a CPU with native bf16.")]

# Choices derived from the library's own tables, so a new one is offered without a second list.
Tta = Enum("Tta", {name: name for name in TTA_VIEWS}, type=str)
Preset = Enum("Preset", {name: name for name in PRESETS}, type=str)
Arch = Enum("Arch", {name: name for name in ARCHS}, type=str)
Loss = Enum("Loss", {name: name for name in LOSSES}, type=str)
Upsampler = Enum("Upsampler", {name: name for name in UPSAMPLERS}, type=str)
TrainMotion = Enum("TrainMotion", {name: name for name in TRAIN_MOTIONS}, type=str)
Motion = Enum("Motion", {name: name for name in TRAIN_MOTIONS if name != "mixed"}, type=str)
SplitScheme = Enum("SplitScheme", {name: name for name in SCHEMES}, type=str)
Layout = Enum("Layout", {name: name for name in (AUTO, *LAYOUTS)}, type=str)
SintelPass = Enum("SintelPass", {name: name for name in SINTEL_PASSES}, type=str)
DEFAULTS = InferenceOptions()  # the one place --tta, --passes, --smooth and --refine take defaults from

TtaOpt = Annotated[Tta, typer.Option("--tta", help="Also predict the mirrored pair(s) and average (hflip: 2x the time, hvflip: 3x).")]
PassesOpt = Annotated[int, typer.Option("--passes", min=1, metavar="N", help="Network passes; each extra one predicts the motion left after warping image 2.")]
SmoothOpt = Annotated[bool, typer.Option("--smooth/--no-smooth", help="Smooth the flow along image 1's edges (guided filter).")]
FbCheckOpt = Annotated[bool, typer.Option("--fb-check", help="Also predict the backward flow (same batch: about 2x the work) and "
                                          "mark pixels that fail the forward-backward check (Sundaram et al. 2010) or leave the frame.")]
RefineOpt = Annotated[int, typer.Option("--refine", min=0, metavar="N", help="Lucas-Kanade steps after the network (the first at half resolution); 0 = off.")]
LayoutOpt = Annotated[Layout, typer.Option("--layout", help="Dataset layout of DATA (a folder, or a pairs.txt list): "
                                          "auto (detected), or force one (see README, Datasets people already have).")]
SintelPassOpt = Annotated[SintelPass, typer.Option("--pass", help="Sintel: which rendering pass (clean or final).")]


Backend = Enum("Backend", {name: name for name in BACKENDS}, type=str)
BackendOpt = Annotated[Backend, typer.Option("--backend", help="Who runs the network: torch, or onnxruntime (CPU, fp32; "
                                             "needs the onnx extra); flowcli's pipeline runs the rest either way.")]


def inference_options(tta: Tta, passes: int, smooth: bool, refine: int, backend: Backend | None = None) -> InferenceOptions:
    return InferenceOptions(tta=tta.value, passes=passes, smooth=smooth, refine=refine,
                            backend=backend.value if backend is not None else DEFAULTS.backend)


def options_label(options: InferenceOptions) -> str:
    """', tta hflip, passes 2' for results computed with those options; '' for the defaults."""
    label = options.label()
    return f", {label}" if label else ""


def as_flags(message: str) -> str:
    """A library message names parameters as `name=value`; show them as this CLI's flags."""
    flags = _flag_names()

    def flag(match: re.Match) -> str:
        name, value = match[1], match[2]
        if name not in flags:
            return match[0]
        on, off = flags[name]
        if value == "True":
            return on
        if value == "False":  # --augment/--no-augment: the off switch; a plain switch: left out
            return off or f"without {on}"
        return f"{on} {value.strip(chr(39))}"

    return re.sub(r"\b([a-z][a-z0-9_]*)=('[^']*'|[^\s,;:)]+)", flag, message)


def _flag_names() -> dict[str, tuple[str, str | None]]:
    """Python parameter name -> the long flag of every command's option and its off switch, if it
    has one (max_side -> ('--max-side', None), augment -> ('--augment', '--no-augment'))."""
    command = typer.main.get_command(app)
    names: dict[str, tuple[str, str | None]] = {}
    for sub in getattr(command, "commands", {}).values():
        for param in sub.params:
            longs = [opt for opt in param.opts if opt.startswith("--")]
            offs = [opt for opt in getattr(param, "secondary_opts", ()) if opt.startswith("--")]
            if longs:
                names.setdefault(param.name, (longs[0], offs[0] if offs else None))
    return names


def given_flags(ctx: typer.Context, names: tuple[str, ...]) -> list[str]:
    """The long flags of the parameters `names` typed on the command line (even at their default
    value): what a command refuses by name when it would ignore them."""
    flags = {p.name: next((o for o in p.opts if o.startswith("--")), p.opts[0]) for p in ctx.command.params}
    return [flags[n] for n in names if getattr(ctx.get_parameter_source(n), "name", None) == "COMMANDLINE"]


DECODER_MODULES = r"(PIL|imageio)(\.|$)"  # their warnings (DecompressionBombWarning, ...) are not for the terminal


@contextmanager
def cli_errors(out_of_memory: str | None = None) -> Iterator[None]:
    """Expected failures become one red line on stderr and exit code 1; Ctrl-C exits 130; the image
    decoders' own warnings stay quiet (flowcli says what matters in its own words).
    `out_of_memory`: what this command offers when an input does not fit (e.g. "max_side=N")."""
    import warnings

    from ..errors import FlowcliError, OutOfMemoryError

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=DECODER_MODULES)
            yield
    except OutOfMemoryError as exc:
        fail(as_flags(f"{exc} ({out_of_memory})" if out_of_memory else str(exc)))
    except (FlowcliError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        fail(as_flags(str(exc)))
    except OSError as exc:  # a full disk, a name too long, a device gone: the system's words, one line
        fail(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else exc.strerror or str(exc))
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        raise typer.Exit(130)


def reuse_freed_memory(device) -> None:
    """On a CPU, let this process keep the memory it frees (flowcli.device.keep_freed_memory): each
    training step, batch or image reuses the last one's pages instead of faulting in fresh ones
    (benchmarks/README.md, Allocator). `device`: a name ("auto", "cpu", ...) or a torch.device."""
    from ..device import keep_freed_memory, resolve_device
    from ..errors import FlowcliError

    try:
        on_cpu = resolve_device(device).type == "cpu"
    except FlowcliError:  # a bad device is reported by the command, where it always was
        return
    if on_cpu:
        keep_freed_memory()


def fail(message: str) -> None:
    _print_error(message)
    raise typer.Exit(1)


def _print_error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def warn(message: str, console: Console = err_console) -> None:
    console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def parse_size(text: str, option: str = "--size") -> tuple[int, int]:
    """'384x512' -> (384, 512): HEIGHTxWIDTH, as everywhere in flowcli."""
    from ..errors import FlowcliError
    from ..training.config import parse_size as parse

    try:
        return parse(text)
    except ValueError:
        raise FlowcliError(f"{option} {text}: expected HEIGHTxWIDTH with positive sides, e.g. 384x512") from None


def say(text: str, console: Console = out_console) -> None:
    """Print plain text: paths with brackets must not be read as rich markup."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def check_json_path(path: Path | None, overwrite: bool, inputs=()) -> None:
    """Refuse an unwritable --json path, an existing one without --overwrite, or one of the command's
    inputs (a weights file, say), before the work."""
    if path is not None:
        from ..io import check_writable

        check_writable(path, overwrite=overwrite, inputs=inputs)


def write_json(path: Path | None, payload) -> None:
    """Write a result (anything with to_json(), or plain JSON data) atomically."""
    if path is None:
        return
    from ..io import atomic_path

    text = payload.to_json() if hasattr(payload, "to_json") else json.dumps(payload, indent=2, default=str)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
    say(f"wrote {path}", err_console)


def progress_bar():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                    console=err_console, transient=True, disable=not err_console.is_terminal)


def table(title: str, rows: list[tuple[str, str]]) -> Table:
    result = Table(title=title, show_header=False, title_justify="left")
    result.add_column(style="bold")
    result.add_column(justify="right")
    for key, value in rows:
        result.add_row(escape(key), escape(value))
    return result


def plural(count: int, noun: str) -> str:
    """'1 pair', '3 pairs'."""
    return f"{count} {noun}" + ("" if count == 1 else "s")
