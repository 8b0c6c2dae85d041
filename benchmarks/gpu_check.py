"""What sknap costs and does on a GPU, in one run that fits four minutes.

    bash benchmarks/gpu_check.sh                  # on the GPU machine
    python benchmarks/gpu_check.py --device cpu --small --report r.md  # dry run

``gpu_check.sh`` installs sknap, writes the versions and the card's name at the
top of the report, then runs this script, which appends one section per
measurement (see docs/performance.md, "GPU figures"):

1. ``tests``: the CUDA tests (``pytest -k cuda`` over the test files that
   mention CUDA), their pass/fail summary. The dry run only counts them.
2. ``entropy``: ``activation_entropy(A)`` and ``ActivationEntropy(n_bins=10,
   n_outputs=0).fit(A, y)`` (with per-class entropies of 10 label classes) of
   a 60,000 x 1,024 float32 matrix already in device memory, against one read
   of it (``A.amax(0)``; goal <= 3x); and the CUDA entropy against the CPU's.
3. ``overhead``: ResNet-50 (torchvision, else timm) with seeded random
   weights, on 2,048 random 3x224x224 inputs in host memory, batches of 256, 1,000
   classes: ``ActivationProbabilityFeatures().fit(extractor.batches(X, y))``
   (one pass), ``ActivationEntropy(per_class=False).fit(...)`` (two passes),
   ``extractor.transform(X)`` and ``fused_transform(pipeline, X)``, each
   against as many bare ``backbone(x.to(device))`` passes under ``no_grad``
   in eval mode (goal <= 1.05x).
4. ``pickle``: a ``make_nap_pipeline`` fitted on the device (``device="auto"``),
   pickled, loaded and scored in a process that sees no GPU
   (``CUDA_VISIBLE_DEVICES=""``); its probabilities against the device's.
5. ``bfloat16``: ``ActivationExtractor(..., autocast="bfloat16")`` against
   float32 on the ResNet: fraction of ``P`` entries and of histogram counts
   that differ, active states that flip, the entropy's relative change.
   Reported, not asserted.

Each section runs under its own time budget (and the whole run under a
deadline): an error or a timeout is written into its section and the next
one runs. The report is rewritten after every section, so it holds what was
measured even if the run is killed. Times are the fastest of a few rounds
after a warm-up, the things compared run side by side in each round, and the
device is synchronised before each clock read. ``--small`` shrinks every size
(2,000 x 64 matrix, a small CNN on 64 inputs of 3x32x32, one torch thread)
for the CPU dry run that ``tests/test_gpu_check.py`` runs.
"""

import argparse
import contextlib
import datetime
import gc
import json
import os
import pickle
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sknap import (
    ActivationEntropy,
    ActivationExtractor,
    ActivationProbabilityFeatures,
    activation_entropy,
    make_nap_pipeline,
)
from sknap.fused import fused_transform

REPO = Path(__file__).resolve().parent.parent

# Seconds each section may take on the GPU; the dry run's sections take a
# few seconds each. The run's deadline can cut them shorter.
BUDGETS = {"tests": 60, "entropy": 25, "overhead": 75, "pickle": 30, "bfloat16": 30}

GOALS = {"entropy": 3.0, "overhead": 1.05}


class OutOfTime(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds):
    """Raise OutOfTime in the main thread after ``seconds`` (POSIX alarm)."""

    def handler(signum, frame):
        raise OutOfTime(f"ran out of its {seconds} s")

    previous = signal.signal(signal.SIGALRM, handler)
    signal.alarm(max(1, int(seconds)))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fastest(functions, device, rounds):
    """Fastest time of each function: one warm-up run each, then ``rounds``
    interleaved rounds (one run of each per round)."""
    for fn in functions.values():
        fn()
        sync(device)
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(rounds):
        for name, fn in functions.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def fmt_time(seconds):
    return f"{seconds * 1e3:,.2f} ms" if seconds < 1 else f"{seconds:,.3f} s"


class Report:
    """The markdown report: the shell script's header, a summary table, one
    section per measurement, and every figure as JSON at the end."""

    def __init__(self, path, args):
        self.path = Path(path)
        self.header = self.path.read_text() if self.path.exists() else ""
        if not self.header:
            self.header = "# sknap GPU check\n\n"
        self.args = args
        self.sections = []  # (key, title, status, lines)
        self.figures = {"mode": {"device": args.device, "small": args.small}}
        self.rows = []  # (measure, value, goal, verdict)

    def add(self, key, title, status, lines, figures):
        self.sections.append((key, title, status, lines))
        self.figures[key] = {"status": status, **figures}
        self.write()

    def row(self, measure, value, goal=None, unit="x"):
        if goal is None:
            verdict = ""
        elif self.args.small:
            verdict = "(dry run)"  # tiny sizes: fixed costs dominate
        else:
            verdict = "met" if value <= goal else "**missed**"
        goal_text = "" if goal is None else f"<= {goal:g}{unit}"
        self.rows.append((measure, f"{value:.3f}{unit}", goal_text, verdict))

    def write(self):
        out = [self.header.rstrip("\n"), ""]
        out += ["## Summary", ""]
        statuses = ", ".join(f"{key}: {status}" for key, _, status, _ in self.sections)
        out += [f"Sections: {statuses or 'none yet'}.", ""]
        if self.rows:
            out += ["| measure | value | goal | |", "| --- | ---: | --- | --- |"]
            out += [f"| {m} | {v} | {g} | {r} |" for m, v, g, r in self.rows]
            out.append("")
        for _, title, status, lines in self.sections:
            out += [f"## {title}", "", f"status: {status}", "", *lines, ""]
        out += ["## Figures (JSON)", "", "```json"]
        out += [json.dumps(self.figures, indent=1, default=float), "```", ""]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("\n".join(out))
        tmp.replace(self.path)


def run_section(report, key, title, fn, deadline):
    budget = min(BUDGETS[key], deadline - time.monotonic() - 3)
    print(f"[gpu_check] {key} (budget {budget:.0f} s)", flush=True)
    start = time.monotonic()
    if budget < 5:
        report.add(key, title, "skipped: out of time", [], {})
        return
    try:
        with time_limit(budget), warnings.catch_warnings():
            # Random weights give dead neurons and empty classes: expected.
            warnings.simplefilter("ignore")
            lines, figures = fn(budget)
        status = "ok"
    except Exception as exc:  # the report records it; the next section runs
        tail = traceback.format_exc().strip().splitlines()[-12:]
        lines = ["```", *tail, "```"]
        figures = {"error": f"{type(exc).__name__}: {exc}"}
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        status = f"error: {type(exc).__name__}: {first}"
    gc.collect()  # free the section's device memory, also after an error
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    figures["seconds"] = round(time.monotonic() - start, 2)
    print(f"[gpu_check] {key}: {status} ({figures['seconds']} s)", flush=True)
    report.add(key, title, status, lines, figures)


# ---------------------------------------------------------------- sections


def cuda_test_files():
    tests = REPO / "tests"
    return [
        p
        for p in sorted(tests.glob("test_*.py"))
        if p.name != "test_gpu_check.py" and "cuda" in p.read_text().lower()
    ]


def section_tests(args, device, budget):
    files = cuda_test_files()
    rel = [str(p.relative_to(REPO)) for p in files]
    if args.small:
        # The dry run runs inside the test suite: count, do not recurse.
        names = [
            m
            for p in files
            for m in re.findall(r"^def (test_\w+)", p.read_text(), re.M)
            if "cuda" in m.lower()
        ]
        lines = [
            f"Dry run: not run. `pytest -k cuda` would select {len(names)} tests "
            f"in {', '.join(rel)}."
        ]
        return lines, {"selected": len(names), "ran": False}
    cmd = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider"]
    cmd += ["-k", "cuda", *rel]
    start = time.monotonic()
    try:
        done = subprocess.run(
            cmd,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=budget - 5,
        )
        output, rc = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        output = (
            (exc.stdout or b"").decode(errors="replace")
            if isinstance(exc.stdout, bytes)
            else (exc.stdout or "")
        )
        raise OutOfTime(
            f"pytest ran past {budget - 5:.0f} s; last output: {output[-500:]}"
        ) from None
    counts = {
        word: int(n)
        for n, word in re.findall(
            r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)",
            output.strip().splitlines()[-1] if output.strip() else "",
        )
    }
    keep = [
        line
        for line in output.splitlines()
        if line.startswith(("FAILED", "ERROR", "SKIPPED"))
    ][:30]
    last = output.strip().splitlines()[-1] if output.strip() else "(no output)"
    lines = [
        f"`{' '.join(['python', '-m', *cmd[2:]])}`",
        "",
        f"exit code {rc}, {time.monotonic() - start:.1f} s: **{last.strip('= ')}**",
    ]
    if keep:
        lines += ["", "```", *keep, "```"]
    if rc not in (0, 1, 5):
        lines += ["", "```", *output.strip().splitlines()[-15:], "```"]
    figures = {"returncode": rc, **counts, "ran": True}
    failed = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    report = args.report_obj
    report.rows.append(
        (
            "CUDA tests",
            f"{counts.get('passed', 0)} passed, {failed} failed, "
            f"{counts.get('skipped', 0)} skipped",
            "all pass",
            "met" if rc == 0 and failed == 0 else "**missed**",
        )
    )
    return lines, figures


def section_entropy(args, device, budget):
    n, m = (2000, 64) if args.small else (60000, 1024)
    gen = torch.Generator(device=device).manual_seed(0)
    A = torch.randn(n, m, device=device, generator=gen).clamp_(min=0)
    y = torch.randint(0, 10, (n,), device=device, generator=gen)
    labels = f"10 classes, a tensor on {device.type}"
    try:
        ActivationEntropy(n_bins=10, n_outputs=0).fit(A, y)
    except Exception as exc:  # record it, and time with labels on the host
        labels = (
            f"10 classes; with labels on {device.type} the fit raised "
            f"`{type(exc).__name__}: {str(exc)[:300]}`, so they are a numpy array"
        )
        y = y.cpu().numpy()
    functions = {
        "read: A.amax(0)": lambda: A.amax(0),
        "read: A.sum()": lambda: A.sum(),
        "activation_entropy(A)": lambda: activation_entropy(A),
        "ActivationEntropy(n_bins=10, n_outputs=0).fit(A, y)": lambda: (
            ActivationEntropy(n_bins=10, n_outputs=0).fit(A, y)
        ),
    }
    times = fastest(functions, device, rounds=3 if args.small else 7)
    floor = times["read: A.amax(0)"]
    lines = [
        f"{n:,} x {m:,} float32 ({A.numel() * 4 / 2**20:,.1f} MiB, "
        f"{(A > 0).float().mean().item():.0%} positive) in {device.type} memory, "
        f"R = 10; labels: {labels}. Fastest of "
        f"{3 if args.small else 7} rounds after a warm-up.",
        "",
        "| | time | / one read (A.amax(0)) |",
        "| --- | ---: | ---: |",
    ]
    for name, t in times.items():
        lines.append(f"| `{name}` | {fmt_time(t)} | {t / floor:.2f}x |")
    read_bw = A.numel() * 4 / floor / 1e9
    on_device = activation_entropy(A)
    on_cpu = activation_entropy(A.cpu())
    lines += [
        "",
        f"One read at {read_bw:,.1f} GB/s. Entropy on {device.type}: "
        f"{on_device:.6f} bits, on the CPU: {on_cpu:.6f} (difference "
        f"{abs(on_device - on_cpu):.2e}).",
    ]
    ratio = times["activation_entropy(A)"] / floor
    ratio_fit = times["ActivationEntropy(n_bins=10, n_outputs=0).fit(A, y)"] / floor
    report = args.report_obj
    report.row(f"entropy {n:,} x {m:,} / one read", ratio, GOALS["entropy"])
    report.row("  fit with 10 classes / one read", ratio_fit, GOALS["entropy"])
    figures = {
        "shape": [n, m],
        "times_s": times,
        "ratio_activation_entropy": ratio,
        "ratio_estimator_fit": ratio_fit,
        "read_GB_per_s": read_bw,
        "entropy_device": on_device,
        "entropy_cpu": on_cpu,
        "entropy_abs_difference": abs(on_device - on_cpu),
    }
    return lines, figures


_BACKBONES = {}


def backbone(args, device):
    """ResNet-50 with seeded random weights, on device, in eval mode:
    torchvision's, else timm's, else a small CNN (always with --small)."""
    key = (args.small, device.type)
    if key in _BACKBONES:
        return _BACKBONES[key]
    if args.small:
        # The dry run: importing torchvision alone takes seconds.
        _BACKBONES[key] = small_cnn(args.classes).to(device).eval(), "Small CNN"
        return _BACKBONES[key]
    name = "resnet50"
    torch.manual_seed(0)
    try:
        import torchvision.models

        model = getattr(torchvision.models, name)(num_classes=args.classes)
        source = f"torchvision {name}"
    except ImportError:
        try:
            import timm

            model = timm.create_model(name, pretrained=False, num_classes=args.classes)
            source = f"timm {name} (torchvision is not installed)"
        except ImportError:
            model = small_cnn(args.classes)
            source = "a small CNN (neither torchvision nor timm is installed)"
    _BACKBONES[key] = model.to(device).eval(), source
    return _BACKBONES[key]


def small_cnn(n_classes):
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, n_classes),
    )


def images(n, size, n_classes, seed=0, device=None):
    """Random inputs in host memory (numpy) and labels; drawn on the device
    when it is CUDA (seconds faster for thousands of 3x224x224 images)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    if device is not None and device.type == "cuda":
        gen = torch.Generator(device=device).manual_seed(seed)
        X = torch.randn((n, 3, size, size), device=device, generator=gen)
        return X.cpu().numpy(), y
    return rng.standard_normal((n, 3, size, size), dtype=np.float32), y


def section_overhead(args, device, budget):
    n, size, batch = (64, 32, 32) if args.small else (args.images, 224, 256)
    model, source = backbone(args, device)
    end = time.monotonic() + budget
    X, y = images(n, size, args.classes, device=device)
    extractor = ActivationExtractor(model, batch_size=batch, device=device)
    extractor.fit(X[:batch])
    C = args.classes
    X_device = torch.from_numpy(X).to(device)

    def bare():
        with torch.no_grad():
            for s in range(0, n, batch):
                model(torch.from_numpy(X[s : s + batch]).to(device))

    def bare_on_device():
        with torch.no_grad():
            for s in range(0, n, batch):
                model(X_device[s : s + batch])

    entropy = ActivationEntropy(n_neurons=0.5, per_class=False, n_outputs=C)
    entropy.fit(extractor.batches(X, y))
    probabilities = ActivationProbabilityFeatures(n_outputs=C).fit(
        entropy.transform(extractor.transform(X[: 2 * batch])), y[: 2 * batch]
    )
    pipeline = [extractor, entropy, probabilities]

    names = {
        "bare forward (inputs copied from host)": (1, bare),
        "bare forward, inputs already on the device (for reference)": (
            1,
            bare_on_device,
        ),
        "P fit: ActivationProbabilityFeatures().fit(batches)": (
            1,
            lambda: ActivationProbabilityFeatures(n_outputs=C).fit(
                extractor.batches(X, y)
            ),
        ),
        "entropy fit: ActivationEntropy(per_class=False).fit(batches)": (
            2,
            lambda: ActivationEntropy(per_class=False, n_outputs=C).fit(
                extractor.batches(X, y)
            ),
        ),
        "extractor.transform(X)": (1, lambda: extractor.transform(X)),
        "fused_transform(pipeline, X)": (1, lambda: fused_transform(pipeline, X)),
    }
    passes = {name: k for name, (k, _) in names.items()}
    functions = {name: fn for name, (_, fn) in names.items()}
    # Rounds that fit the budget: a round (and the warm-up) makes 7 passes.
    start = time.perf_counter()
    bare()
    sync(device)
    per_round = 7.5 * (time.perf_counter() - start)
    fit = int((end - time.monotonic() - 5) / per_round) - 1
    rounds = max(1, min(2 if args.small else 3, fit))
    times = fastest(functions, device, rounds=rounds)
    base = times["bare forward (inputs copied from host)"]
    lines = [
        f"{source}, seeded random weights, eval mode; {n:,} random inputs of "
        f"3x{size}x{size} in host memory (numpy), {C} classes, batches of "
        f"{batch}; {extractor.n_neurons_:,} neurons (every ReLU call, channel "
        f"means). Fastest of {rounds} rounds after a warm-up; each against as "
        "many bare passes as it makes.",
        "",
        "| | passes | time | per pass / bare |",
        "| --- | ---: | ---: | ---: |",
    ]
    ratios = {}
    for name, t in times.items():
        ratios[name] = t / (passes[name] * base)
        lines.append(
            f"| {name} | {passes[name]} | {fmt_time(t)} | {ratios[name]:.3f}x |"
        )
    throughput = n / base
    lines += ["", f"Bare forward: {throughput:,.0f} images/s."]
    report = args.report_obj
    what = "small CNN (dry run)" if args.small else "ResNet-50 b256"
    report.rows.append((f"{what}: bare forward", f"{throughput:,.0f} images/s", "", ""))
    for name, label in [
        ("P fit: ActivationProbabilityFeatures().fit(batches)", "P fit"),
        ("entropy fit: ActivationEntropy(per_class=False).fit(batches)", "entropy fit"),
        ("extractor.transform(X)", "transform"),
        ("fused_transform(pipeline, X)", "fused_transform"),
    ]:
        report.row(f"{what}: {label} / bare", ratios[name], GOALS["overhead"])
    figures = {
        "backbone": source,
        "n_images": n,
        "image_size": size,
        "batch_size": batch,
        "n_classes": C,
        "n_neurons": extractor.n_neurons_,
        "times_s": times,
        "ratios": ratios,
        "bare_images_per_s": throughput,
    }
    return lines, figures


LOADER = r"""
import json, pickle, sys
import numpy as np, torch
folder = sys.argv[1]
with open(folder + "/pipe.pkl", "rb") as f:
    pipe = pickle.load(f)
X = np.load(folder + "/X.npy"); y = np.load(folder + "/y.npy")
proba = pipe.predict_proba(X)
np.save(folder + "/proba_cpu.npy", proba)
devices = sorted({str(p.device) for p in pipe[0].backbone.parameters()})
print(json.dumps({"cuda_available": torch.cuda.is_available(),
                  "score": float(pipe.score(X, y)), "backbone_devices": devices}))
"""


@contextlib.contextmanager
def no_tf32():
    # TF32 convolutions would differ from the CPU's float32 by ~1e-3: compare
    # the pickling, not the precision.
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def section_pickle(args, device, budget):
    n_train, n_test = (128, 64) if args.small else (1024, 512)
    X, y = images(n_train + n_test, 32, 10, seed=1)
    model = small_cnn(10).to(device).eval()
    fit_device = "auto" if device.type == "cuda" else "cpu"
    with no_tf32():
        pipe = make_nap_pipeline(
            model, device=fit_device, max_iter=2, batch_size=128, random_state=0
        ).fit(X[:n_train], y[:n_train])
        proba = pipe.predict_proba(X[n_train:])
        score = pipe.score(X[n_train:], y[n_train:])
    with tempfile.TemporaryDirectory() as folder:
        with open(os.path.join(folder, "pipe.pkl"), "wb") as f:
            pickle.dump(pipe, f)
        size = os.path.getsize(os.path.join(folder, "pipe.pkl"))
        np.save(os.path.join(folder, "X.npy"), X[n_train:])
        np.save(os.path.join(folder, "y.npy"), y[n_train:])
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
        try:
            done = subprocess.run(
                [sys.executable, "-c", LOADER, folder],
                capture_output=True,
                text=True,
                env=env,
                timeout=budget - 5,
            )
        except subprocess.TimeoutExpired:
            raise OutOfTime(
                f"loading and scoring on the CPU ran past {budget - 5:.0f} s"
            ) from None
        if done.returncode:
            raise RuntimeError(
                "loading on the CPU failed:\n" + done.stderr.strip()[-1500:]
            )
        loaded = json.loads(done.stdout.strip().splitlines()[-1])
        proba_cpu = np.load(os.path.join(folder, "proba_cpu.npy"))
    diff = float(np.abs(proba - proba_cpu).max())
    agree = float((proba.argmax(1) == proba_cpu.argmax(1)).mean())
    ok = agree == 1.0 and diff <= 1e-4 and not loaded["cuda_available"]
    lines = [
        f"make_nap_pipeline(small CNN, device={fit_device!r}) fitted on "
        f"{device.type} ({n_train} random 3x32x32 inputs, 10 classes, TF32 off), "
        f"pickled ({size / 2**10:,.0f} KiB), loaded in a process with "
        'CUDA_VISIBLE_DEVICES="" (CUDA available there: '
        f"{loaded['cuda_available']}; backbone on "
        f"{', '.join(loaded['backbone_devices'])}).",
        "",
        f"On {n_test} test inputs: predictions agree {agree:.1%}, largest "
        f"probability difference {diff:.2e} (tolerance 1e-4); score "
        f"{score:.4f} on {device.type}, {loaded['score']:.4f} on the CPU: "
        f"**{'ok' if ok else 'differs'}**.",
    ]
    args.report_obj.rows.append(
        (
            "pickled on the device, scored on a CPU-only process",
            f"max abs dP {diff:.1e}, {agree:.0%} agree",
            "<= 1e-4, 100%",
            "met" if ok else "**missed**",
        )
    )
    figures = {
        "fit_device": fit_device,
        "pickle_bytes": size,
        "max_abs_proba_difference": diff,
        "prediction_agreement": agree,
        "score_device": score,
        "score_cpu": loaded["score"],
        "cpu_process_saw_cuda": loaded["cuda_available"],
        "equal_within_tolerance": ok,
    }
    return lines, figures


def section_bfloat16(args, device, budget):
    n, size, batch = (64, 32, 32) if args.small else (1024, 224, 256)
    model, source = backbone(args, device)
    X, y = images(n, size, args.classes, seed=2, device=device)
    C = args.classes
    f32 = ActivationExtractor(model, batch_size=batch, device=device).fit(X[:batch])
    b16 = ActivationExtractor(
        model, batch_size=batch, device=device, autocast="bfloat16"
    ).fit(X[:batch])
    N = f32.n_neurons_
    P32 = ActivationProbabilityFeatures(n_outputs=C).fit(f32.batches(X, y))
    P16 = ActivationProbabilityFeatures(n_outputs=C).fit(b16.batches(X, y))
    P32, P16 = P32.activation_probability_, P16.activation_probability_
    e32 = ActivationEntropy(per_class=False, n_outputs=C).fit(f32.batches(X, y))
    e16 = ActivationEntropy(per_class=False, n_outputs=C).fit(b16.batches(X, y))
    Z32, Z16 = f32.transform(X), b16.transform(X)
    H32, H16 = e32.histograms(Z32), e32.histograms(Z16)  # the same edges
    flips = float(((Z32[:, :N] > 0) != (Z16[:, :N] > 0)).mean())
    moved = float(np.abs(H32 - H16).sum() / 2 / max(H32.sum(), 1))
    times = fastest(
        {"float32": lambda: f32.transform(X), "bfloat16": lambda: b16.transform(X)},
        device,
        rounds=2,
    )
    figures = {
        "backbone": source,
        "n_images": n,
        "n_neurons": N,
        "P_entries_differing": float((P32 != P16).mean()),
        "P_max_abs_difference": float(np.abs(P32 - P16).max()),
        "histogram_counts_differing": float((H32 != H16).mean()),
        "values_moved_to_another_bin_at_least": moved,
        "active_states_flipped": flips,
        "entropy_float32": e32.entropy_,
        "entropy_bfloat16": e16.entropy_,
        "entropy_relative_change": abs(e16.entropy_ - e32.entropy_)
        / max(abs(e32.entropy_), 1e-12),
        "activation_max_relative_difference": float(
            np.abs(Z32[:, :N] - Z16[:, :N]).max() / max(np.abs(Z32[:, :N]).max(), 1e-12)
        ),
        "transform_time_s": times,
        "bfloat16_speedup": times["float32"] / times["bfloat16"],
    }
    lines = [
        f"{source}, {n:,} random inputs of 3x{size}x{size}, {N:,} neurons, R = 10; "
        'float32 against `autocast="bfloat16"`. Reported, not asserted.',
        "",
        "| | value |",
        "| --- | ---: |",
        f"| P entries that differ | {figures['P_entries_differing']:.2%} |",
        f"| largest P difference | {figures['P_max_abs_difference']:.4f} |",
        f"| histogram counts that differ (float32 edges) "
        f"| {figures['histogram_counts_differing']:.2%} |",
        f"| positive values moved to another bin (at least) | {moved:.2%} |",
        f"| active states (> 0) flipped | {flips:.3%} |",
        f"| entropy relative change | {figures['entropy_relative_change']:.2e} |",
        f"| transform time float32 / bfloat16 | {figures['bfloat16_speedup']:.2f}x |",
    ]
    report = args.report_obj
    report.rows.append(
        (
            "bfloat16 vs float32: P entries / histogram counts that differ",
            f"{figures['P_entries_differing']:.1%} / "
            f"{figures['histogram_counts_differing']:.1%}",
            "(reported)",
            "",
        )
    )
    return lines, figures


SECTIONS = [
    ("tests", "1. CUDA tests", section_tests),
    ("entropy", "2. Entropy of a matrix in device memory", section_entropy),
    ("overhead", "3. Statistics inside the forward pass", section_overhead),
    ("pickle", "4. Fitted on the device, pickled, scored on the CPU", section_pickle),
    ("bfloat16", "5. bfloat16 autocast against float32", section_bfloat16),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--small", action="store_true", help="dry-run sizes")
    parser.add_argument(
        "--report",
        default=os.path.join(os.environ.get("OUT") or ".", "gpu_report.md"),
        help="markdown report; an existing file is kept as its header",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=220,
        help="deadline of the whole run; sections past it are skipped",
    )
    parser.add_argument("--images", type=int, default=2048, help="ResNet-50 inputs")
    parser.add_argument(
        "--classes",
        type=int,
        default=None,
        help="classes of the ResNet's head and labels (default 1000; 10 with --small)",
    )
    parser.add_argument(
        "--only", nargs="+", choices=[key for key, _, _ in SECTIONS], default=None
    )
    args = parser.parse_args(argv)
    if args.classes is None:
        args.classes = 10 if args.small else 1000
    if args.small:
        torch.set_num_threads(1)  # the dry run shares a CI machine
    deadline = time.monotonic() + args.seconds
    report = Report(args.report, args)
    args.report_obj = report
    device = torch.device(args.device)
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat("T", "seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "card": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu_threads": torch.get_num_threads(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    report.figures["run"] = info
    if device.type == "cuda" and not torch.cuda.is_available():
        report.add(
            "device",
            "Device",
            "error: --device cuda but torch.cuda.is_available() is False",
            [],
            {},
        )
        return 2
    report.write()
    for key, title, fn in SECTIONS:
        if args.only and key not in args.only:
            continue
        run_section(report, key, title, lambda b, fn=fn: fn(args, device, b), deadline)
    bad = [key for key, _, status, _ in report.sections if status != "ok"]
    print(f"[gpu_check] report: {report.path}; sections not ok: {bad or 'none'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
