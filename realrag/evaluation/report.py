"""Evaluation outputs: JSON, a markdown table, an image grid and a bar plot (PNG)."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from realrag.evaluation.metrics import INTERVAL_METHOD, LOWER_IS_BETTER, METRICS

METRIC_LABELS = {"accuracy": "Identity acc. ↑", "kid": "KID ↓", "fid": "FID∞ ↓", "fid_n": "FID@N ↓",
                 "clip_t": "CLIP-T ↑", "clip_i": "CLIP-I ↑"}
PLOTTED = ("accuracy", "kid", "fid", "clip_t", "clip_i")


def relative_paths(value: Any, root: Path | None = None) -> Any:
    """The same structure with paths under ``root`` (default: the working directory) made relative,
    so committed results name no machine's directories."""
    prefix = f"{(root or Path.cwd()).resolve()}/"
    if isinstance(value, str):
        return value.replace(prefix, "")
    if isinstance(value, dict):
        return {k: relative_paths(v, root) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(relative_paths(v, root) for v in value)
    return value


def strict_json(value: Any) -> Any:
    """NaN/inf -> None, so the file is standard JSON (an undefined statistic reads as null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


def write_json(result: dict, path: Path) -> Path:
    path.write_text(json.dumps(strict_json(result), indent=1, default=str, allow_nan=False) + "\n")
    return path


def _fmt(value: float, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if metric == "kid":
        return f"{value:.4f}"
    if metric in ("fid", "fid_n"):
        return f"{value:.2f}"
    return f"{value:.3f}"


def _cell(arm: dict, metric: str) -> str:
    lo, hi = arm["ci"][metric]
    return f"{_fmt(arm[metric], metric)} [{_fmt(lo, metric)}, {_fmt(hi, metric)}]"


def markdown_table(result: dict) -> str:
    setup = result.get("setup", {})
    ci = int(round(100 * setup.get("confidence", 0.95)))
    lines = []
    for set_name in setup.get("prompt_sets", []):
        arms = result[set_name]
        lines += [f"**{set_name}** ({setup.get('set_sizes', {}).get(set_name, '?')} prompts × "
                  f"{setup.get('images_per_prompt', '?')} seeds; values with {ci}% prompt-level bootstrap intervals)", "",
                  "| arm | " + " | ".join(METRIC_LABELS[m] for m in METRICS) + " |",
                  "|---|" + "---|" * len(METRICS)]
        best = {m: (min if LOWER_IS_BETTER[m] else max)(a[m] for a in arms.values()) for m in METRICS}
        for name, arm in arms.items():
            cells = []
            for m in METRICS:
                text = _cell(arm, m)
                cells.append(f"**{text}**" if arm[m] == best[m] and len(arms) > 1 else text)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    retrieval = result.get("retrieval") or {}
    if retrieval:
        sets = setup.get("prompt_sets", [])
        lines += ["**retrieval** (recall@k: a top-k corpus image shows the prompt's object)", "",
                  "| arm | " + " | ".join(f"{s} R@1 | {s} R@5" for s in sets) + " |",
                  "|---|" + "---|---|" * len(sets)]
        for arm, r in retrieval.items():
            cells = []
            for s in sets:
                bs = r.get("by_set", {}).get(s, {})
                cells += [_fmt(bs.get("recall@1", float("nan")), "r"), _fmt(bs.get("recall@5", float("nan")), "r")]
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        lines.append("")
    deltas = result.get("deltas") or {}
    if deltas:
        lines += [f"**paired differences** (same prompts and seeds, resampled by prompt; {ci}% interval; an interval that "
                  "excludes 0 is a real difference)", "", "| set | comparison | " + " | ".join(METRIC_LABELS[m] for m in METRICS) + " |",
                  "|---|---|" + "---|" * len(METRICS)]
        for set_name, pairs in deltas.items():
            for pair, d in pairs.items():
                cells = [f"{_fmt(d[m]['delta'], m)} [{_fmt(d[m]['ci'][0], m)}, {_fmt(d[m]['ci'][1], m)}]" for m in METRICS]
                lines.append(f"| {set_name} | {pair} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += sensitivity_table(result.get("reference_sensitivity") or {})
    lines += [f"- {result.get('interval_method', INTERVAL_METHOD)}",
              f"- generator: `{setup.get('generator')}`; feature space (FID/KID): **{setup.get('feature_space')}**; "
              f"classifier (accuracy): {setup.get('classifier')}; CLIP-T/CLIP-I scorer: {setup.get('scorer')}",
              "- retriever arms: " + "; ".join(f"`{a}`: {s}" for a, s in setup.get("arm_sources", {}).items()),
              f"- top-k {setup.get('top_k')}, steps {setup.get('steps')}, guidance {setup.get('guidance')}, "
              f"reference scale {setup.get('ip_scale')}, seeds {setup.get('seeds')}"]
    return "\n".join(lines) + "\n"


def sensitivity_table(sensitivity: dict) -> list[str]:
    """Reference sensitivity per set: the probe (each prompt with a right / wrong / no reference) and
    each arm's outputs split by what its top-1 reference showed."""
    if not sensitivity:
        return []
    lines = ["**reference sensitivity** (identity accuracy on the true object; cosine distance of the evaluator features "
             "to the true object's real photos; share of outputs showing the wrong reference's object)", "",
             "| set | condition | outputs | identity acc. ↑ | distance ↓ | shows wrong ref. |", "|---|---|---|---|---|---|"]
    for set_name, block in sensitivity.items():
        rows = [(f"probe: {k} reference" if k != "none" else "probe: no reference", v)
                for k, v in block.get("probe", {}).items() if isinstance(v, dict)]
        for arm, splits in block.get("arms", {}).items():
            rows += [(f"{arm}: retrieved {k}" if k != "none" else f"{arm}: no reference", v) for k, v in splits.items()]
        for label, v in rows:
            lines.append(f"| {set_name} | {label} | {v['n']} | {_fmt(v['accuracy'], 'r')} | {_fmt(v['distance'], 'r')} | "
                         f"{_fmt(v['wrong_shown'], 'r')} |")
        probe = block.get("probe", {})
        if "right_minus_wrong_accuracy" in probe:
            lines.append(f"| {set_name} | right − wrong accuracy gap | | {probe['right_minus_wrong_accuracy']:+.3f} | | |")
    return [*lines, ""]


def write_markdown(result: dict, path: Path, title: str = "Evaluation", images: dict[str, str] | None = None) -> Path:
    body = [f"# {title}", "", f"Command: `{result.get('command', '')}`  ", f"Date: {result.get('date', '')}, "
            f"{result.get('seconds', 0):.0f} s", "", markdown_table(result)]
    for caption, rel in (images or {}).items():
        body += [f"![{caption}]({rel})", ""]
    path.write_text("\n".join(body))
    return path


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # older Pillow
        return ImageFont.load_default()


def image_grid(rows: list[dict], arms: list[str], path: Path, cell: int = 96) -> Path:
    """rows: {"prompt", "real": PIL, "refs": {arm: PIL|None}, "outputs": {arm: [PIL, ...]}}.

    Columns: prompt | a real photo | per arm: its retrieved reference, then its outputs."""
    n_out = max((len(r["outputs"][a]) for r in rows for a in arms), default=1)
    text_w = cell * 2
    header = 28
    width = text_w + cell + len(arms) * cell * (1 + n_out) + 8 * len(arms)
    height = header + len(rows) * (cell + 6)
    grid = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(grid)
    font, small = _font(14), _font(12)
    x = text_w
    draw.text((4, 6), "prompt", fill="black", font=font)
    draw.text((x + 4, 6), "real", fill="black", font=font)
    x += cell + 8
    for arm in arms:
        draw.text((x + 4, 6), f"{arm}: reference | outputs", fill="black", font=font)
        x += cell * (1 + n_out) + 8
    for i, row in enumerate(rows):
        y = header + i * (cell + 6)
        draw.multiline_text((4, y + 4), "\n".join(textwrap.wrap(row["prompt"], 24)), fill="black", font=small)
        grid.paste(row["real"].convert("RGB").resize((cell, cell), Image.Resampling.NEAREST), (text_w, y))
        x = text_w + cell + 8
        for arm in arms:
            ref = row["refs"].get(arm)
            if ref is not None:
                grid.paste(ref.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST), (x, y))
            else:
                draw.rectangle((x, y, x + cell - 1, y + cell - 1), outline=(200, 200, 200))
                draw.text((x + 8, y + cell // 2 - 8), "no reference", fill=(150, 150, 150), font=small)
            for j, out in enumerate(row["outputs"][arm]):
                grid.paste(out.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST), (x + cell * (1 + j), y))
            x += cell * (1 + n_out) + 8
    grid.save(path)
    return path


def bar_plot(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    setup = result.get("setup", {})
    sets = setup.get("prompt_sets", [])
    arms = list(result[sets[0]]) if sets else []
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(3.2 * len(PLOTTED), 3.4))
    width = 0.8 / max(1, len(arms))
    colors = plt.get_cmap("tab10")
    for ax, m in zip(np.atleast_1d(axes), PLOTTED, strict=True):
        for k, arm in enumerate(arms):
            vals = [result[s][arm][m] for s in sets]
            xs = np.arange(len(sets)) + (k - (len(arms) - 1) / 2) * width
            ax.bar(xs, vals, width, label=arm, color=colors(k))
            # the interval as computed, from its lower to its upper end (never clipped at the bar's top)
            lo, hi = ([result[s][arm]["ci"][m][i] for s in sets] for i in (0, 1))
            ax.vlines(xs, lo, hi, color="black", linewidth=1)
            ax.hlines([*lo, *hi], [*(xs - width / 5)] * 2, [*(xs + width / 5)] * 2, color="black", linewidth=1)
        ax.set_xticks(np.arange(len(sets)), sets)
        ax.set_title(METRIC_LABELS[m])
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.suptitle(f"{setup.get('generator', '')}; FID/KID features: {setup.get('feature_space', '')}; "
                 f"{int(round(100 * setup.get('confidence', 0.95)))}% prompt-level bootstrap intervals", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
