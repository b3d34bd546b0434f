//! Charts as SVG rendered on the server (no script, no canvas): each is an image with
//! a title and a text description, so a screen reader gets the numbers too.

use maud::{html, Markup};

const W: f64 = 640.0;
const H: f64 = 160.0;
const LEFT: f64 = 56.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 8.0;

/// One value of a series, with the label of its window.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub label: String,
    pub value: f64,
}

/// Compact number for an axis: 1234 -> "1.2k".
pub fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Bars, one per window. `id` names the title for `aria-labelledby`.
pub fn bars(id: &str, title: &str, points: &[Point]) -> Markup {
    let max = points.iter().map(|p| p.value).fold(0.0_f64, f64::max);
    let scale = if max > 0.0 { max } else { 1.0 };
    let plot_w = W - LEFT;
    let plot_h = H - BOTTOM - TOP;
    let n = points.len().max(1) as f64;
    let slot = plot_w / n;
    let bw = (slot * 0.8).max(1.0);
    let total: f64 = points.iter().map(|p| p.value).sum();
    let title_id = format!("{id}-title");
    let desc_id = format!("{id}-desc");
    let desc = match (points.first(), points.last()) {
        (Some(f), Some(l)) => format!(
            "{} windows from {} to {}; total {}; highest {}",
            points.len(),
            f.label,
            l.label,
            compact(total),
            compact(max)
        ),
        _ => "no windows".to_owned(),
    };
    let ticks: Vec<usize> = match points.len() {
        0 => vec![],
        1 => vec![0],
        l => vec![0, l / 2, l - 1],
    };
    html! {
        svg class="chart" id=(id) role="img" viewBox=(format!("0 0 {W} {H}"))
            aria-labelledby=(format!("{title_id} {desc_id}")) data-points=(points.len())
            data-total=(total) {
            title id=(title_id) { (title) }
            desc id=(desc_id) { (desc) }
            line x1=(LEFT) y1=(TOP + plot_h) x2=(W) y2=(TOP + plot_h) class="axis" {}
            text x=(LEFT - 6.0) y=(TOP + 10.0) text-anchor="end" class="tick" { (compact(max)) }
            text x=(LEFT - 6.0) y=(TOP + plot_h) text-anchor="end" class="tick" { "0" }
            @for (i, p) in points.iter().enumerate() {
                @let h = (p.value.max(0.0) / scale) * plot_h;
                rect class="bar" x=(format!("{:.1}", LEFT + i as f64 * slot + (slot - bw) / 2.0))
                    y=(format!("{:.1}", TOP + plot_h - h)) width=(format!("{bw:.1}"))
                    height=(format!("{h:.1}")) data-value=(p.value) {
                    title { (p.label) ": " (compact(p.value)) }
                }
            }
            @for i in ticks {
                @if let Some(p) = points.get(i) {
                    text x=(format!("{:.1}", LEFT + (i as f64 + 0.5) * slot)) y=(H - 6.0)
                        text-anchor="middle" class="tick" { (p.label) }
                }
            }
        }
    }
}

/// A score line on a 0-100 scale, with the band thresholds as dashed lines.
pub fn score_line(id: &str, title: &str, points: &[Point], thresholds: &[f64]) -> Markup {
    let plot_w = W - LEFT;
    let plot_h = H - BOTTOM - TOP;
    let x = |i: usize| {
        if points.len() <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + i as f64 * plot_w / (points.len() - 1) as f64
        }
    };
    let y = |v: f64| TOP + plot_h - v.clamp(0.0, 100.0) / 100.0 * plot_h;
    let path: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(p.value)))
        .collect();
    let title_id = format!("{id}-title");
    let desc_id = format!("{id}-desc");
    let desc = match (points.first(), points.last()) {
        (Some(f), Some(l)) => format!(
            "{} days: {} on {}, {} on {}",
            points.len(),
            compact(f.value),
            f.label,
            compact(l.value),
            l.label
        ),
        _ => "no scores".to_owned(),
    };
    html! {
        svg class="chart" id=(id) role="img" viewBox=(format!("0 0 {W} {H}"))
            aria-labelledby=(format!("{title_id} {desc_id}")) data-points=(points.len()) {
            title id=(title_id) { (title) }
            desc id=(desc_id) { (desc) }
            line x1=(LEFT) y1=(y(0.0)) x2=(W) y2=(y(0.0)) class="axis" {}
            @for t in thresholds {
                line x1=(LEFT) y1=(format!("{:.1}", y(*t))) x2=(W) y2=(format!("{:.1}", y(*t))) class="threshold" {}
                text x=(LEFT - 6.0) y=(format!("{:.1}", y(*t) + 4.0)) text-anchor="end" class="tick" { (compact(*t)) }
            }
            text x=(LEFT - 6.0) y=(y(100.0) + 8.0) text-anchor="end" class="tick" { "100" }
            polyline class="line" points=(path.join(" ")) {}
            @for (i, p) in points.iter().enumerate() {
                circle class="dot" cx=(format!("{:.1}", x(i))) cy=(format!("{:.1}", y(p.value))) r="2.5" {
                    title { (p.label) ": " (compact(p.value)) }
                }
            }
            @if let (Some(f), Some(l)) = (points.first(), points.last()) {
                text x=(LEFT) y=(H - 6.0) text-anchor="start" class="tick" { (f.label) }
                text x=(W) y=(H - 6.0) text-anchor="end" class="tick" { (l.label) }
            }
        }
    }
}

/// One line of [`lines`]: a CSS class (its colour), its name (written at the line's
/// end, so it is never told by colour alone) and one value per day.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub class: &'static str,
    pub name: String,
    pub values: Vec<f64>,
}

/// Counts over days: one line per series on a shared axis from 0 to the highest
/// count, each named at its last point, dashed or dotted by series so lines that cross
/// stay apart in greyscale. `labels` are the days.
pub fn lines(id: &str, title: &str, labels: &[String], series: &[Line]) -> Markup {
    const RIGHT: f64 = 86.0;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - BOTTOM - TOP;
    let max = series
        .iter()
        .flat_map(|l| l.values.iter().copied())
        .fold(0.0_f64, f64::max);
    let scale = if max > 0.0 { max } else { 1.0 };
    let x = |i: usize| {
        if labels.len() <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + i as f64 * plot_w / (labels.len() - 1) as f64
        }
    };
    let y = |v: f64| TOP + plot_h - v.max(0.0) / scale * plot_h;
    let title_id = format!("{id}-title");
    let desc_id = format!("{id}-desc");
    let desc = match (labels.first(), labels.last()) {
        (Some(f), Some(l)) => {
            let ends: Vec<String> = series
                .iter()
                .map(|s| {
                    let first = s.values.first().copied().unwrap_or(0.0);
                    let last = s.values.last().copied().unwrap_or(0.0);
                    format!("{} {} to {}", s.name, compact(first), compact(last))
                })
                .collect();
            format!("{} days from {f} to {l}: {}", labels.len(), ends.join("; "))
        }
        _ => "no days".to_owned(),
    };
    html! {
        svg class="chart" id=(id) role="img" viewBox=(format!("0 0 {W} {H}"))
            aria-labelledby=(format!("{title_id} {desc_id}")) data-points=(labels.len()) {
            title id=(title_id) { (title) }
            desc id=(desc_id) { (desc) }
            line x1=(LEFT) y1=(y(0.0)) x2=(LEFT + plot_w) y2=(y(0.0)) class="axis" {}
            text x=(LEFT - 6.0) y=(TOP + 10.0) text-anchor="end" class="tick" { (compact(max)) }
            text x=(LEFT - 6.0) y=(TOP + plot_h) text-anchor="end" class="tick" { "0" }
            @for (n, s) in series.iter().enumerate() {
                @let points: Vec<String> = s.values.iter().enumerate()
                    .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v))).collect();
                g class=(format!("series {}", s.class)) data-series=(s.name) data-last=[s.values.last()] {
                    polyline class=(format!("count-line style-{}", n % 3)) points=(points.join(" ")) {}
                    @if let Some(v) = s.values.last() {
                        text x=(format!("{:.1}", x(s.values.len().saturating_sub(1)) + 6.0))
                            y=(format!("{:.1}", y(*v) + 4.0)) class="tick series-name" {
                            (s.name) " " (compact(*v))
                        }
                    }
                }
            }
            @if let (Some(f), Some(l)) = (labels.first(), labels.last()) {
                text x=(LEFT) y=(H - 6.0) text-anchor="start" class="tick" { (f) }
                text x=(LEFT + plot_w) y=(H - 6.0) text-anchor="end" class="tick" { (l) }
            }
        }
    }
}

/// How much of a bar `percent` fills: 0-100 (an overage fills it).
pub fn fill(percent: f64) -> f64 {
    if percent.is_finite() {
        percent.clamp(0.0, 100.0)
    } else {
        0.0
    }
}

/// A used / limit bar with the projected end of period as a marker.
pub fn usage_bar(label: &str, percent: f64, projected_percent: Option<f64>) -> Markup {
    const BW: f64 = 300.0;
    let width = fill(percent) / 100.0 * BW;
    let class = if percent >= 100.0 {
        "fill over"
    } else if percent >= 80.0 {
        "fill warn"
    } else {
        "fill"
    };
    html! {
        svg class="meter" role="img" aria-label=(label) viewBox=(format!("0 0 {BW} 14"))
            width=(BW) height="14" data-percent=(format!("{percent:.2}")) {
            rect class="track" x="0" y="0" width=(BW) height="14" {}
            rect class=(class) x="0" y="0" width=(format!("{width:.1}")) height="14" {}
            @if let Some(p) = projected_percent {
                @let px = fill(p) / 100.0 * BW;
                line class="projected" x1=(format!("{px:.1}")) y1="0" x2=(format!("{px:.1}")) y2="14" {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[f64]) -> Vec<Point> {
        v.iter()
            .enumerate()
            .map(|(i, v)| Point {
                label: format!("d{i}"),
                value: *v,
            })
            .collect()
    }

    #[test]
    fn the_tallest_bar_fills_the_plot_and_a_zero_bar_is_flat() {
        let svg = bars("u", "Usage", &pts(&[0.0, 5.0, 10.0])).into_string();
        let plot_h = H - BOTTOM - TOP;
        assert!(svg.contains(&format!("height=\"{plot_h:.1}\"")), "{svg}");
        assert!(svg.contains("height=\"0.0\""), "{svg}");
        assert!(svg.contains("data-total=\"15\""), "{svg}");
        assert!(svg.contains("3 windows from d0 to d2; total 15; highest 10"));
    }

    #[test]
    fn labels_in_charts_are_escaped() {
        let svg = bars(
            "u",
            "<script>",
            &[Point {
                label: "<b>".into(),
                value: 1.0,
            }],
        )
        .into_string();
        assert!(!svg.contains("<script>") && !svg.contains("<b>"), "{svg}");
    }

    #[test]
    fn an_entitlement_bar_is_as_long_as_its_percentage_and_an_overage_fills_it() {
        let svg = usage_bar("api", 42.5, Some(90.0)).into_string();
        assert!(svg.contains("width=\"127.5\""), "{svg}");
        assert!(svg.contains("data-percent=\"42.50\""));
        let over = usage_bar("api", 130.0, None).into_string();
        assert!(
            over.contains("class=\"fill over\" x=\"0\" y=\"0\" width=\"300.0\""),
            "{over}"
        );
        assert_eq!(fill(f64::NAN), 0.0);
    }

    #[test]
    fn a_score_line_is_drawn_through_every_day() {
        let svg = score_line("h", "Score", &pts(&[80.0, 50.0, 20.0]), &[40.0, 60.0]).into_string();
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("3 days: 80 on d0, 20 on d2"), "{svg}");
        assert_eq!(svg.matches("class=\"threshold\"").count(), 2);
    }

    #[test]
    fn count_lines_are_named_at_their_end_and_share_one_axis() {
        let days: Vec<String> = ["d0", "d1", "d2"].map(String::from).to_vec();
        let svg = lines(
            "b",
            "Bands",
            &days,
            &[
                Line {
                    class: "band-red",
                    name: "At risk".into(),
                    values: vec![1.0, 2.0, 4.0],
                },
                Line {
                    class: "band-green",
                    name: "Healthy".into(),
                    values: vec![8.0, 6.0, 5.0],
                },
            ],
        )
        .into_string();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(
            svg.contains("At risk 4<") && svg.contains("Healthy 5<"),
            "{svg}"
        );
        assert!(
            svg.contains("3 days from d0 to d2: At risk 1 to 4; Healthy 8 to 5"),
            "{svg}"
        );
        // The highest count (8) is the top of the plot, 0 its floor.
        let top = format!("{LEFT:.1},{TOP:.1}");
        assert!(svg.contains(&top), "{svg}");
        assert!(lines("e", "Empty", &[], &[])
            .into_string()
            .contains("no days"));
    }

    #[test]
    fn compact_numbers_read_well_on_an_axis() {
        assert_eq!(compact(0.0), "0");
        assert_eq!(compact(12.5), "12.5");
        assert_eq!(compact(1234.0), "1.2k");
        assert_eq!(compact(45_000.0), "45k");
        assert_eq!(compact(2_500_000.0), "2.5M");
    }
}
