"""``sknap demo``: what the method gives on a small, under-trained backbone.

Backbone accuracy, then one auxiliary model on the backbone's probabilities
alone, on the paper's features and on the binned features with the bin
count ``R`` a small grid search picked; and the activation entropy.
"""

import time
import warnings

__all__ = ["run_demo"]

_DEMO_GRID = (2, 5, 10, 20)
_DEMO_LR = 0.01


def run_demo(args):
    """Run the demo with the parsed arguments; returns the exit status 0."""
    import torch

    start = time.perf_counter()
    # The networks are tiny: one thread each step is many times faster than
    # several, above all on a machine that is busy with other work.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _demo_run(args, start)
    finally:
        torch.set_num_threads(threads)


def _demo_run(args, start):
    import numpy as np
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from .. import AuxiliaryClassifier, make_nap_pipeline
    from .._cache import clear_memory_cache
    from ..exceptions import DeadNeuronWarning
    from ..toy import digits_mlp
    from ..training import predict_proba

    model, X_train, X_test, y_train, y_test = digits_mlp(
        epochs=args.epochs, random_state=args.seed
    )
    test_proba = predict_proba(model, X_test, device=args.device)
    backbone_acc = float(np.mean(test_proba.argmax(1) == y_test))
    common = dict(cache="memory", device=args.device, random_state=args.seed)
    # The same auxiliary model everywhere: 20 epochs at the learning rate
    # _DEMO_LR (1e-3, the default, leaves it under-trained in 20 epochs).
    aux = {"auxiliary__learning_rate_init": _DEMO_LR}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeadNeuronWarning)
        ypred_only = AuxiliaryClassifier(
            learning_rate_init=_DEMO_LR, device=args.device, random_state=args.seed
        )
        ypred_only.fit(predict_proba(model, X_train, device=args.device), y_train)
        ypred_acc = ypred_only.score(test_proba, y_test)
        paper = make_nap_pipeline(model, n_bins=args.n_bins, **common)
        paper.set_params(**aux).fit(X_train, y_train)
        grid = sorted({*_DEMO_GRID, args.n_bins})
        search = GridSearchCV(
            make_nap_pipeline(model, binned=True, **common).set_params(**aux),
            {"entropy__n_bins": grid},
            cv=StratifiedKFold(3),
        ).fit(X_train, y_train)
    clear_memory_cache()
    best_r = search.best_params_["entropy__n_bins"]
    entropy = paper.named_steps["entropy"]
    extractor = paper.named_steps["extractor"]
    print(f"sknap demo: MLP 64-64-32-10 on scikit-learn's digits, {args.epochs} epochs")
    if backbone_acc < 0.9:
        print(
            "  (an under-trained backbone, on purpose: there is room to improve"
            "\n   on it; --epochs 30 trains it well)"
        )
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
    print(
        f"  test accuracy (auxiliary model: AuxiliaryClassifier, 20 epochs, "
        f"learning rate {_DEMO_LR})"
    )
    rows = [
        ("backbone", backbone_acc),
        ("auxiliary on Y_pred only", ypred_acc),
        ("auxiliary on the paper's features", paper.score(X_test, y_test)),
        (f"auxiliary on binned features (R={best_r})", search.score(X_test, y_test)),
    ]
    for label, value in rows:
        print(f"    {label:<38}{value:.4f}")
    print(
        "  grid search over entropy__n_bins, binned features (3-fold CV accuracy"
        "\n  on the training set, which the backbone was trained on)"
    )
    for R, score in zip(grid, search.cv_results_["mean_test_score"], strict=True):
        mark = "  <- picked" if R == best_r else ""
        print(f"    R={R:<3} {score:.4f}{mark}")
    print(f"  time                      {time.perf_counter() - start:.1f} s")
    return 0
