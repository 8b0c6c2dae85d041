"""Command line: ``sknap demo`` (and ``python -m sknap``)."""

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
    print(f"  neurons (ReLU outputs)    {entropy.n_neurons_in_}"
          f" ({entropy.n_dead_neurons_} dead)")
    print(f"  activation entropy E      {entropy.entropy_:.2f} bits (R={args.n_bins})")
    print(f"  normalized entropy        {entropy.normalized_entropy_:.4f}")
    for layer, value in entropy.layer_entropy(extractor.get_feature_names_out()).items():
        print(f"    layer {layer:<20} {value:.2f} bits")
    print(f"  backbone test accuracy    {backbone_acc:.4f}")
    print(f"  auxiliary test accuracy   {aux_acc:.4f}")
    print(f"  time                      {time.perf_counter() - start:.1f} s")
    return 0


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
    args = parser.parse_args(argv)
    if args.command == "demo":
        return _demo(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
