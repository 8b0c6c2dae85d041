"""Fill docs/results.md from the runs' report.md files.

Usage: copy each run's output folder (``sknap reproduce --output DIR``) to
docs/runs/NAME, then ``python docs/runs/splice.py``.

A line ``<!-- report: NAME SECTION[,SECTION...] -->`` in docs/results.md.in is
replaced by those sections of docs/runs/NAME/report.md (sections are matched by
the start of their '## ' heading; 'head' is the command, data, machine and wall
time lines). Copying only: every number comes from the run.

The summary table reads each run's results.json: runs made with ``--seeds K``
(K > 1) show "mean ± SD over seeds" and, for test gains, the bootstrap interval
over test images "[low, high]"; single-seed runs show the one value, and "n/a"
for columns they did not measure (the binned features).
"""

import json
import re
import sys
from pathlib import Path

runs = Path(__file__).resolve().parent
docs = runs.parent


def sections(text):
    parts = re.split(r"(?m)^## ", text)
    head = parts[0]
    out = {"head": head.split("\n", 1)[1].strip()}
    for part in parts[1:]:
        title, _, body = part.partition("\n")
        out[title.strip()] = "### " + title.strip() + "\n" + body.strip()
    return out


def fill(match):
    name, wanted = match.group(1), match.group(2).split(",")
    text = (runs / name / "report.md").read_text()
    found = sections(text)
    chunks = []
    for w in wanted:
        keys = [k for k in found if k.startswith(w)]
        if not keys:
            sys.exit(f"{name}: no section {w!r}; have {list(found)}")
        chunk = found[keys[0]]
        chunk = chunk.replace("](figure2.png)", f"](figures/{name}.png)")
        chunks.append(chunk)
    return "\n\n".join(chunks)


# The paper's numbers (Tables 1 and 2), beside the run that stands in for them.
PAPER = {
    "mnist5k-fcnn": ("MNIST, FCNN", -0.87, -0.94, 2.1, 1.5),
    "mnist5k-fcnn-mixed": ("MNIST Mixed, FCNN", 0.22, 0.51, None, None),
    "fashion-fcnn": ("Fashion MNIST, FCNN", -0.95, -0.99, 0.4, 0.4),
    "fashion-fcnn-mixed": ("Fashion MNIST Mixed, FCNN", 0.57, 0.67, None, None),
    "fashion32-resnet18": ("CIFAR-10, ResNet-50", -0.68, -0.67, 0.6, 1.1),
}


def num(v, fmt="{:+.2f}"):
    return "n/a" if v is None else fmt.format(v)


def with_spread(value, sd=None, interval=None):
    """``+0.28 ± 0.10 [+0.05, +0.50]``: mean, SD over seeds, interval."""
    text = num(value)
    if sd is not None:
        text += f" ± {sd:.2f}"
    if interval is not None:
        text += f" [{interval[0]:+.2f}, {interval[1]:+.2f}]"
    return text


def summary(match):
    rows = [
        "| run | seeds | checkpoints | wall time | PCC E~Tr (paper) | SCC E~Tr (paper) "
        "| PCC E~Te | Avg.Imp. Tr (paper) | Avg.Imp. Te (paper) | PTe > Te "
        "| Te gain: Y_pred only | Te gain: binned P | Te gain: cross-fitted P "
        "| Te gain: LR probe | P over Y_pred only |",
        "|" + "---|" * 15,
    ]
    rows += [row(name) for name in match.group(1).split(",")]
    return "\n".join(rows)


def row(name):
    """The summary table's row of one run, from its results.json."""
    p = json.loads((runs / name / "results.json").read_text())
    s, m = p["summary"], p["meta"]
    t1, t2, ab = s["table1"], s["table2"], s["ablations"]
    spread = s.get("spread", {})
    seeds = s.get("seeds") or [p["settings"].get("random_state", 0)]
    paper = PAPER.get(name, ("none", None, None, None, None))

    def corr(key, ref=None, missing=False):
        sd = spread.get(f"table1.{key}", {}).get("sd")
        text = with_spread(t1[key], sd)
        return text if missing else f"{text} ({num(ref)})"

    def gain(item, ref=None, cite=False):
        if item is None:
            return "n/a"
        text = with_spread(
            item["avg_improvement"], item.get("sd"), item.get("interval")
        )
        return f"{text} ({num(ref)})" if cite else text

    def ablation(key):
        return gain((ab.get(key) or {}).get("test"))

    over = s.get("over_ypred", {}).get("aux")
    if over is not None:
        over_cell = with_spread(over["gain"], None, [over["low"], over["high"]])
    elif "ypred" in ab:
        over_cell = num(
            t2["test"]["avg_improvement"] - ab["ypred"]["test"]["avg_improvement"]
        )
    else:
        over_cell = "n/a"
    n_pairs = t2["test"].get("n", s["n_checkpoints"])
    return (
        " | ".join(
            [
                f"| `{name}`",
                str(len(seeds)),
                str(s["n_checkpoints"]),
                f"{m['wall_time_s'] / 60:.1f} min",
                corr("pearson_train", paper[1]),
                corr("spearman_train", paper[2]),
                corr("pearson_test", missing=True),
                gain(t2["train"], paper[3], cite=True),
                gain(t2["test"], paper[4], cite=True),
                f"{t2['test']['wins']}/{n_pairs}",
                ablation("ypred"),
                ablation("binned"),
                ablation("cv_aux"),
                ablation("probe"),
                over_cell,
            ]
        )
        + " |"
    )


def main():
    template = (runs / "results.md.in").read_text()
    template = re.sub(r"<!-- summary: (\S+) -->", summary, template)
    out = re.sub(r"<!-- report: (\S+) (.+?) -->", fill, template)
    (docs / "results.md").write_text(out)
    figs = docs / "figures"
    figs.mkdir(exist_ok=True)
    for name in re.findall(r"<!-- report: (\S+) .+? -->", template):
        png = runs / name / "figure2.png"
        if png.exists():
            (figs / f"{name}.png").write_bytes(png.read_bytes())
    print("wrote docs/results.md")


if __name__ == "__main__":
    main()
