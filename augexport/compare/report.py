"""The comparison's outputs: compare.json (every number), compare.md (a table made from that JSON,
so the two always agree), compare.png (validation accuracy per epoch, mean ± 1 std over repeats)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..outdir import write_file_atomic

DIGITS_ROUND = 4  # accuracies in the JSON (and so in the table) to 4 decimals


def accuracy_summary(values: list[float]) -> dict[str, Any]:
    """mean, sample std (n-1; 0 for one repeat) and the per-repeat values, rounded once here."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": round(mean, DIGITS_ROUND), "std": round(std, DIGITS_ROUND),
            "values": [round(v, DIGITS_ROUND) for v in values]}


def write_json(path: Path, report: dict[str, Any]) -> dict[str, Any]:
    """Write the report; return it as read back, the single source of the table's numbers."""
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    write_file_atomic(path, text.encode())
    return json.loads(text)


def _num(value: Any) -> str:
    return json.dumps(value)  # exactly the JSON's spelling of the number


def markdown_table(report: dict[str, Any]) -> str:
    """One row per variant: final validation accuracy mean, std, per-repeat values, and the run's size."""
    lines = ["| variant | final val accuracy (mean) | std | per repeat | epochs | train images | train records "
             "| seconds (export + train) |",
             "|---|---|---|---|---|---|---|---|"]
    for v in report["variants"]:
        acc = v["final_val_accuracy"]
        per = ", ".join(_num(x) for x in acc["values"])
        lines.append(f"| {v['name']} | {_num(acc['mean'])} | {_num(acc['std'])} | {per} | {_num(v['epochs'])} "
                     f"| {_num(v['train_images'])} | {_num(v['train_records'])} "
                     f"| {_num(v['seconds']['export'])} + {_num(v['seconds']['train'])} |")
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    s = report["split"]
    head = (f"# augexport compare: {report['source']}\n\n"
            f"Validation: {s['val_images']} source images, never augmented and disjoint from training "
            f"(split by a seeded hash of source_id, seed {report['seed']}, val fraction {s['val_fraction']}). "
            f"Training: {s['train_images']} source images"
            + (f" (at most {s['train_per_class']} per class)" if s["train_per_class"] is not None else "")
            + f". {report['repeats']} repeat{'s' if report['repeats'] != 1 else ''} per variant (training seeds {report['training_seeds']}); "
            f"every epoch is {report['steps_per_epoch']} steps of batch {report['model']['batch_size']} for every "
            f"variant. Total {report['seconds']} s.\n\n")
    write_file_atomic(path, (head + markdown_table(report)).encode())


def write_png(path: Path, report: dict[str, Any]) -> None:
    """Validation accuracy per epoch: mean line and ±1 std band per variant (Agg, no display)."""
    import io

    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for v in report["variants"]:
        curves = np.array(v["val_accuracy_per_epoch"], dtype=float)  # repeats x epochs
        epochs = np.arange(1, curves.shape[1] + 1)
        mean, std = curves.mean(axis=0), curves.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(curves.shape[1])
        (line,) = ax.plot(epochs, mean, label=f"{v['name']} ({v['final_val_accuracy']['mean']:.3f})")
        ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"{report['source']}: {report['split']['train_images']} training images, "
                 f"mean ± 1 std over {report['repeats']} repeat{'s' if report['repeats'] != 1 else ''}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_file_atomic(path, buf.getvalue())
