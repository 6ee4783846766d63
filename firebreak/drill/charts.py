"""Small self-contained SVG charts for reports and benchmark pages (no plotting dependency)."""

from __future__ import annotations

import html
import statistics


def percentile(values: list[float], p: float) -> float:
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def distribution_svg(series: dict[str, list[float]], title: str, unit: str = "s", width: int = 760) -> str:
    """One row per series: every value as a dot, with p50 and p95 marked; shared linear axis."""
    row_h, left, right, top = 70, 150, 30, 50
    height = top + row_h * len(series) + 40
    vmax = max((max(v) for v in series.values() if v), default=1.0) * 1.08 or 1.0

    def x(v: float) -> float:
        return left + (width - left - right) * v / vmax

    colors = ["#b00020", "#1b6fb0", "#1b7f3b", "#7a4bb0"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{html.escape(title)}</text>']
    step = _nice_step(vmax)
    t = 0.0
    while t <= vmax:
        out.append(f'<line x1="{x(t):.1f}" y1="{top - 8}" x2="{x(t):.1f}" y2="{height - 35}" stroke="#ddd"/>')
        out.append(f'<text x="{x(t):.1f}" y="{height - 20}" text-anchor="middle">{t:g} {unit}</text>')
        t += step
    for i, (name, values) in enumerate(series.items()):
        y = top + row_h * i + row_h / 2
        c = colors[i % len(colors)]
        out.append(f'<text x="{left - 10}" y="{y - 4:.1f}" text-anchor="end" font-weight="bold">{html.escape(name)}</text>')
        if values:
            p50, p95 = statistics.median(values), percentile(values, 95)
            out.append(f'<text x="{left - 10}" y="{y + 12:.1f}" text-anchor="end" fill="#555">'
                       f'p50 {p50:.2f}, p95 {p95:.2f} (n={len(values)})</text>')
            for j, v in enumerate(sorted(values)):
                jitter = ((j * 7) % 11 - 5) * 2.2
                out.append(f'<circle cx="{x(v):.1f}" cy="{y + jitter:.1f}" r="3.5" fill="{c}" fill-opacity="0.6"/>')
            for label, v in (("p50", p50), ("p95", p95)):
                out.append(f'<line x1="{x(v):.1f}" y1="{y - 20:.1f}" x2="{x(v):.1f}" y2="{y + 20:.1f}" '
                           f'stroke="{c}" stroke-width="2" stroke-dasharray="{"" if label == "p50" else "4 3"}"/>')
    out.append("</svg>")
    return "\n".join(out)


def _nice_step(vmax: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 20, 50, 100):
        if vmax / step <= 12:
            return step
    return vmax / 10
