//! Charts as inline SVG: stacked bar charts with axes, a legend and an accessible title.

use super::html::esc;
use std::fmt::Write as _;

pub(super) struct BarChart<'a> {
    pub(super) id: &'a str,
    pub(super) caption: &'a str,
    pub(super) desc: &'a str,
    pub(super) labels: &'a [String],
    /// Label as `MM-DD` (dates) and only as many as fit.
    pub(super) short_labels: bool,
    pub(super) series: &'a [(&'a str, &'a str)],
    /// One stack of values per label, one value per series.
    pub(super) values: &'a [Vec<u64>],
    pub(super) x_title: &'a str,
    pub(super) y_title: &'a str,
    pub(super) value_labels: bool,
}

/// Rounds `max / 4` up to 1, 2 or 5 times a power of ten.
fn tick_step(max: u64) -> u64 {
    let rough = max.div_ceil(4).max(1);
    let mut power = 1u64;
    loop {
        for m in [1, 2, 5] {
            if m * power >= rough {
                return m * power;
            }
        }
        power = power.saturating_mul(10);
    }
}

/// A stacked bar chart as inline SVG, with axes, a legend and an accessible title.
pub(super) fn bar_chart(c: &BarChart<'_>) -> String {
    const W: f64 = 660.0;
    const H: f64 = 280.0;
    const LEFT: f64 = 52.0;
    const RIGHT: f64 = 14.0;
    const TOP: f64 = 34.0;
    const BOTTOM: f64 = 50.0;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let n = c.labels.len().max(1);
    let totals: Vec<u64> = c.values.iter().map(|v| v.iter().sum()).collect();
    let max = totals.iter().copied().max().unwrap_or(0);
    let step = tick_step(max);
    let mut top = (max.div_ceil(step).max(1)) * step;
    if c.value_labels && top == max {
        // Room above the tallest bar for its label.
        top += step;
    }
    let y = |v: u64| TOP + plot_h - (v as f64 / top as f64) * plot_h;
    let slot = plot_w / n as f64;
    let bar = (slot * 0.72).clamp(1.0, 56.0);
    let mut s = String::new();
    let _ = write!(
        s,
        "<figure><figcaption id=\"{id}-caption\">{cap}</figcaption>\
         <svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-labelledby=\"{id}-title {id}-desc\"><title id=\"{id}-title\">{cap}</title>\
         <desc id=\"{id}-desc\">{desc}</desc>",
        id = c.id,
        cap = esc(c.caption),
        desc = esc(c.desc),
    );
    // Grid and y axis.
    let mut v = 0;
    while v <= top {
        let yy = y(v);
        let _ = write!(
            s,
            "<line x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#d8dee4\" stroke-width=\"1\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\" fill=\"#444\">{v}</text>",
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0
        );
        v += step;
    }
    let _ = write!(
        s,
        "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{:.1}\" stroke=\"#444\"/>\
         <line x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#444\"/>",
        TOP + plot_h,
        TOP + plot_h,
        W - RIGHT,
        TOP + plot_h
    );
    // Bars.
    for (i, stack) in c.values.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
        let mut base = 0u64;
        for (k, value) in stack.iter().enumerate() {
            if *value == 0 {
                continue;
            }
            let (name, color) = c.series.get(k).copied().unwrap_or(("", "#888"));
            let y1 = y(base + value);
            let y0 = y(base);
            let _ = write!(
                s,
                "<rect x=\"{x:.2}\" y=\"{y1:.2}\" width=\"{bar:.2}\" height=\"{:.2}\" fill=\"{color}\">\
                 <title>{}: {value} {}</title></rect>",
                (y0 - y1).max(0.5),
                esc(c.labels.get(i).map_or("", String::as_str)),
                esc(name)
            );
            base += value;
        }
        if c.value_labels {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\" fill=\"#222\">{}</text>",
                x + bar / 2.0,
                y(base) - 4.0,
                totals.get(i).copied().unwrap_or(0)
            );
        }
    }
    // X labels: as many as fit.
    let every = if c.short_labels { n.div_ceil(12) } else { 1 };
    for (i, label) in c.labels.iter().enumerate() {
        if i % every != 0 {
            continue;
        }
        let text = if c.short_labels {
            label.get(5..).unwrap_or(label)
        } else {
            label
        };
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\" fill=\"#444\">{}</text>",
            LEFT + slot * (i as f64 + 0.5),
            TOP + plot_h + 15.0,
            esc(text)
        );
    }
    // Axis titles.
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11.5\" fill=\"#222\">{}</text>\
         <text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\" font-size=\"11.5\" fill=\"#222\">{}</text>",
        LEFT + plot_w / 2.0,
        H - 12.0,
        esc(c.x_title),
        TOP + plot_h / 2.0,
        esc(c.y_title)
    );
    // Legend.
    let mut lx = LEFT;
    for (name, color) in c.series {
        let _ = write!(
            s,
            "<rect x=\"{lx:.1}\" y=\"10\" width=\"12\" height=\"12\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"20\" font-size=\"11.5\" fill=\"#222\">{}</text>",
            lx + 16.0,
            esc(name)
        );
        lx += 24.0 + 7.0 * name.len() as f64;
    }
    if max == 0 {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"13\" fill=\"#666\">no data in this period</text>",
            LEFT + plot_w / 2.0,
            TOP + plot_h / 2.0
        );
    }
    s.push_str("</svg></figure>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks() {
        assert_eq!(tick_step(0), 1);
        assert_eq!(tick_step(7), 2);
        assert_eq!(tick_step(33), 10);
        assert_eq!(tick_step(180), 50);
    }
}
