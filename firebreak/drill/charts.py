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
    row_h, left, right, top = 70, 230, 30, 50
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


def timeline_svg(buckets: dict[str, list[tuple[int, int]]], markers: list[tuple[float, str, str]],
                 seconds: int, title: str, width: int = 900) -> str:
    """Writes per second per site (stacked bars above the axis) and errors (below, red).

    buckets: site -> [(ok, errors) per second]; markers: (second, label, colour).
    """
    left, right, top, bottom = 50, 20, 40, 60
    height = 320
    plot_w = width - left - right
    mid = top + (height - top - bottom) * 0.68
    up_h, down_h = mid - top, height - bottom - mid
    ok_max = max((sum(b[i][0] for b in buckets.values() if i < len(b)) for i in range(seconds)), default=1) or 1
    err_max = max((sum(b[i][1] for b in buckets.values() if i < len(b)) for i in range(seconds)), default=1) or 1
    bw = plot_w / max(seconds, 1)
    palette = ["#1b6fb0", "#1b7f3b", "#c77c02", "#7a4bb0", "#0f8a8a"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="20" font-size="14" font-weight="bold">{html.escape(title)}</text>',
           f'<line x1="{left}" y1="{mid:.1f}" x2="{width - right}" y2="{mid:.1f}" stroke="#333"/>',
           f'<text x="{left - 6}" y="{top + 8}" text-anchor="end">{ok_max}/s</text>',
           f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end" fill="#b00020">{err_max}/s</text>']
    for i in range(seconds):
        x = left + i * bw
        y = mid
        for j, (site, b) in enumerate(buckets.items()):
            ok = b[i][0] if i < len(b) else 0
            h = up_h * ok / ok_max
            if h:
                out.append(f'<rect x="{x:.1f}" y="{y - h:.1f}" width="{max(bw - 1, 1):.1f}" height="{h:.1f}" '
                           f'fill="{palette[j % len(palette)]}"><title>{html.escape(site)} second {i}: {ok} ok</title></rect>')
            y -= h
        errs = sum(b[i][1] for b in buckets.values() if i < len(b))
        if errs:
            h = down_h * errs / err_max
            out.append(f'<rect x="{x:.1f}" y="{mid:.1f}" width="{max(bw - 1, 1):.1f}" height="{h:.1f}" fill="#b00020">'
                       f'<title>second {i}: {errs} failed or unknown</title></rect>')
        if i % max(1, seconds // 15) == 0:
            out.append(f'<text x="{x:.1f}" y="{height - bottom + 14}" text-anchor="middle">{i}s</text>')
    for k, (t, label, colour) in enumerate(markers):
        x = left + t * bw
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" stroke="{colour}" '
                   f'stroke-width="2" stroke-dasharray="5 3"/>')
        out.append(f'<text x="{x + 3:.1f}" y="{top + 12 + 13 * (k % 3)}" fill="{colour}">{html.escape(label)}</text>')
    for j, site in enumerate(buckets):
        out.append(f'<rect x="{left + j * 110}" y="{height - 22}" width="10" height="10" fill="{palette[j % len(palette)]}"/>'
                   f'<text x="{left + j * 110 + 14}" y="{height - 13}">{html.escape(site)}</text>')
    out.append(f'<rect x="{left + len(buckets) * 110}" y="{height - 22}" width="10" height="10" fill="#b00020"/>'
               f'<text x="{left + len(buckets) * 110 + 14}" y="{height - 13}">failed / unknown</text>')
    out.append("</svg>")
    return "\n".join(out)
