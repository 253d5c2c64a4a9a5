"""The markdown table of a benchmark run (one row per measured configuration)."""

from __future__ import annotations

COLUMNS = (
    ("impl", "impl"),
    ("K", "K"),
    ("variant", "variant"),
    ("outer/s", "outer_steps_per_s"),
    ("inner/s", "inner_steps_per_s"),
    ("tokens/s", "tokens_per_s"),
    ("GFLOP/s", "achieved_gflops"),
    ("% peak", "peak_fraction"),
    ("peak MB", "peak_mb"),
    ("compile s", "compile_s"),
    ("step CPU s", "step_cpu_s"),
    ("compile CPU s", "compile_cpu_s"),
)


def variant_name(workload: dict) -> str:
    remat = f"remat={workload['remat']}"
    if workload.get("unrolled"):
        remat = "python-unrolled, no remat"
    parts = [remat, "1st-order" if workload["first_order"] else "2nd-order"]
    if not workload["first_order"] and workload.get("second_order", "auto") != "auto":
        parts.append(f"second_order={workload['second_order']}")
    if workload.get("active_rows"):
        parts.append(f"active_rows={workload['active_rows']}")
    if workload.get("devices", 1) > 1:
        parts.append(f"{workload['devices']} devices")
    if workload.get("meta_batch", 1) > 1:
        parts.append(f"M={workload['meta_batch']}")
    return " ".join(parts)


def table_row(result: dict, peak_flops: float | None) -> dict:
    """The columns of one result; missing figures (e.g. torch compile time) become ``-``."""
    workload = result["workload"]
    row = {
        "impl": result.get("impl", "jax"),
        "K": workload["inner_steps"],
        "variant": variant_name(workload),
        "outer_steps_per_s": result["outer_steps_per_s"],
        "inner_steps_per_s": result["inner_steps_per_s"],
        "tokens_per_s": result["tokens_per_s"],
        "achieved_gflops": result["achieved_flops"] / 1e9,
        "peak_fraction": 100 * result["achieved_flops"] / peak_flops if peak_flops else None,
        "peak_mb": result.get("device_peak_mb") or result["peak_rss_mb"],
        "compile_s": result.get("compile_s"),
        # CPU seconds of all threads: the figures to compare on a machine others are loading.
        "step_cpu_s": result.get("step_cpu_s"),
        "compile_cpu_s": result.get("compile_cpu_s"),
    }
    return row


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}"
    return str(value)


def markdown_table(results: list[dict], peak_flops: float | None) -> str:
    header = "| " + " | ".join(title for title, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [header, rule]
    for result in results:
        if "error" in result:
            workload = result["workload"]
            lines.append(f"| {result.get('impl', 'jax')} | {workload['inner_steps']} | "
                         f"{variant_name(workload)} | failed: {result['error']} |")
            continue
        row = table_row(result, peak_flops)
        lines.append("| " + " | ".join(_cell(row[key]) for _, key in COLUMNS) + " |")
    return "\n".join(lines)
