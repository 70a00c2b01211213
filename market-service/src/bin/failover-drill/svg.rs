//! `drill.svg`: a timeline of which replica led when, with the faults marked, and a histogram
//! of fault → acquired times per fault kind. Hand-written SVG, no dependencies.

use std::fmt::Write as _;

use crate::checks::{End, acting_end};
use crate::drill::Outcome;
use crate::fault::FaultKind;
use crate::report::RunInfo;

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 30.0;
const LANE: f64 = 26.0;
const PALETTE: [&str; 6] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948",
];

fn fault_color(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::Term => "#2ca02c",
        FaultKind::Delete => "#17becf",
        FaultKind::Kill => "#d62728",
        FaultKind::Pause => "#9467bd",
        FaultKind::NatsRestart => "#8c564b",
    }
}

/// Renders the picture.
pub(crate) fn render(run: &RunInfo, outcome: &Outcome) -> String {
    let mut lanes: Vec<String> = Vec::new();
    for term in &outcome.terms {
        if !lanes.contains(&term.identity) {
            lanes.push(term.identity.clone());
        }
    }
    lanes.sort();
    let start = outcome
        .terms
        .first()
        .map_or(outcome.started, |t| t.acquired.min(outcome.started));
    let end = outcome.ended;
    let span = end.millis_since(start).max(1.0) / 1e3;
    let plot = WIDTH - LEFT - RIGHT;
    let x = |secs: f64| LEFT + plot * (secs / span).clamp(0.0, 1.0);

    let timeline_top = 60.0;
    let timeline_height = lanes.len().max(1) as f64 * LANE;
    let hist_top = timeline_top + timeline_height + 110.0;
    let hist_height = 200.0;
    let height = hist_top + hist_height + 70.0;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="22" font-size="16" font-weight="bold">failover-drill: {} rounds, {}</text>"#,
        outcome.rounds.len(),
        escape(&run.system)
    );
    let _ = writeln!(
        svg,
        r##"<text x="{LEFT}" y="40" fill="#555">{} · seed {} · {} · {}</text>"##,
        escape(&run.timings),
        run.seed,
        outcome.started,
        escape(&run.machine)
    );

    // Lanes and leadership bars.
    for (index, lane) in lanes.iter().enumerate() {
        let y = timeline_top + index as f64 * LANE;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            y + LANE * 0.65,
            escape(lane)
        );
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{}" width="{plot}" height="{}" fill="#f4f4f4"/>"##,
            y + 3.0,
            LANE - 6.0
        );
    }
    for (index, term) in outcome.terms.iter().enumerate() {
        let Some(lane) = lanes.iter().position(|l| *l == term.identity) else {
            continue;
        };
        let successor = outcome.terms.get(index + 1);
        let until = match acting_end(term, successor, &outcome.faults) {
            End::Open => end,
            other => other.at().unwrap_or(end),
        };
        let (x0, x1) = (
            x(term.acquired.millis_since(start) / 1e3),
            x(until.millis_since(start) / 1e3),
        );
        let y = timeline_top + lane as f64 * LANE + 5.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{x0:.2}" y="{y}" width="{:.2}" height="{}" fill="{}"><title>{} token {}: {} → {}</title></rect>"#,
            (x1 - x0).max(1.0),
            LANE - 10.0,
            PALETTE[lane % PALETTE.len()],
            escape(&term.process),
            term.token,
            term.acquired,
            until
        );
    }
    // Faults: a line across the lanes; a pause also shades the frozen time.
    for fault in &outcome.faults {
        let fx = x(fault.at.millis_since(start) / 1e3);
        let color = fault_color(fault.kind);
        if let Some(resumed) = fault.resumed {
            let rx = x(resumed.millis_since(start) / 1e3);
            let _ = writeln!(
                svg,
                r#"<rect x="{fx:.2}" y="{timeline_top}" width="{:.2}" height="{timeline_height}" fill="{color}" opacity="0.15"/>"#,
                (rx - fx).max(1.0)
            );
        }
        let _ = writeln!(
            svg,
            r#"<line x1="{fx:.2}" x2="{fx:.2}" y1="{}" y2="{}" stroke="{color}" stroke-width="1.2"><title>{} {} at {}</title></line>"#,
            timeline_top - 6.0,
            timeline_top + timeline_height,
            fault.kind,
            escape(&fault.process),
            fault.at
        );
    }
    // Time axis.
    let axis_y = timeline_top + timeline_height + 4.0;
    let step = nice_step(span / 10.0);
    let mut tick = 0.0;
    while tick <= span + 1e-9 {
        let tx = x(tick);
        let _ = writeln!(
            svg,
            r##"<line x1="{tx:.2}" x2="{tx:.2}" y1="{axis_y}" y2="{}" stroke="#888"/><text x="{tx:.2}" y="{}" text-anchor="middle" fill="#555">{}</text>"##,
            axis_y + 4.0,
            axis_y + 16.0,
            trim(tick)
        );
        tick += step;
    }
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" text-anchor="end" fill="#555">seconds · bars: who led (from the logs) · lines: faults</text>"##,
        WIDTH - RIGHT,
        axis_y + 32.0
    );
    legend(&mut svg, outcome, LEFT, axis_y + 32.0);

    // Histograms of fault → acquired, one panel per fault kind (their scales differ by 100×).
    let mut kinds: Vec<FaultKind> = outcome.rounds.iter().map(|r| r.fault).collect();
    kinds.sort();
    kinds.dedup();
    let panels = kinds.len().max(1) as f64;
    let gap = 30.0;
    let panel_width = (WIDTH - LEFT - RIGHT - gap * (panels - 1.0)) / panels;
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="{}" font-size="14" font-weight="bold">fault → successor's "Leadership acquired" (ms), rounds per bin</text>"#,
        hist_top - 40.0
    );
    for (index, kind) in kinds.iter().enumerate() {
        let px = LEFT + index as f64 * (panel_width + gap);
        let values: Vec<f64> = outcome
            .rounds
            .iter()
            .filter(|r| r.fault == *kind)
            .filter_map(|r| r.fault_to_acquired_ms)
            .collect();
        let rounds = outcome.rounds.iter().filter(|r| r.fault == *kind).count();
        let area = Area {
            left: px,
            top: hist_top,
            width: panel_width,
            height: hist_height,
        };
        histogram(&mut svg, *kind, rounds, &values, area);
    }
    svg.push_str("</svg>\n");
    svg
}

fn legend(svg: &mut String, outcome: &Outcome, left: f64, y: f64) {
    let mut kinds: Vec<FaultKind> = outcome.faults.iter().map(|f| f.kind).collect();
    kinds.sort();
    kinds.dedup();
    let mut lx = left;
    for kind in kinds {
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" x2="{}" y1="{}" y2="{}" stroke="{}" stroke-width="3"/><text x="{}" y="{y}">{kind}</text>"#,
            lx + 14.0,
            y - 4.0,
            y - 4.0,
            fault_color(kind),
            lx + 18.0
        );
        lx += 30.0 + kind.name().len() as f64 * 7.0;
    }
}

/// Where a histogram panel goes.
struct Area {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
}

fn histogram(svg: &mut String, kind: FaultKind, rounds: usize, values: &[f64], area: Area) {
    let Area {
        left,
        top,
        width,
        height,
    } = area;
    let bottom = top + height;
    // Two lines: with four panels, one line per panel does not fit.
    let _ = writeln!(
        svg,
        r#"<text x="{left}" y="{}" font-weight="bold" fill="{}">{kind}: {} rounds</text>"#,
        top - 18.0,
        fault_color(kind),
        rounds
    );
    if let Some(s) = crate::stats::summarize(values) {
        let _ = writeln!(
            svg,
            r##"<text x="{left}" y="{}" font-size="11" fill="#333">p50 {:.1} · p99 {:.1} · max {:.1} ms</text>"##,
            top - 4.0,
            s.p50,
            s.p99,
            s.max
        );
    }
    let _ = writeln!(
        svg,
        r##"<line x1="{left}" x2="{}" y1="{bottom}" y2="{bottom}" stroke="#888"/>"##,
        left + width
    );
    if values.is_empty() {
        let why = if rounds > 0 && !kind.forces_new_leader() {
            ["no leadership change:", "the leader kept its lease"]
        } else {
            ["n/a", "(not observed)"]
        };
        for (line, text) in why.iter().enumerate() {
            let _ = writeln!(
                svg,
                r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">{text}</text>"##,
                left + width / 2.0,
                top + height / 2.0 + line as f64 * 16.0
            );
        }
        return;
    }
    const BINS: usize = 20;
    let max = values.iter().copied().fold(0.0, f64::max);
    let step = nice_step(max / BINS as f64 * 1.0001).max(1e-3);
    let bins = ((max / step).floor() as usize + 1).clamp(1, BINS + 1);
    let mut counts = vec![0usize; bins];
    for v in values {
        counts[((v / step).floor() as usize).min(bins - 1)] += 1;
    }
    let highest = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let bar = width / bins as f64;
    for (i, count) in counts.iter().enumerate() {
        if *count == 0 {
            continue;
        }
        let h = (height - 20.0) * *count as f64 / highest;
        let _ = writeln!(
            svg,
            r#"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{h:.2}" fill="{}"><title>{}–{} ms: {count}</title></rect>"#,
            left + i as f64 * bar + 1.0,
            bottom - h,
            (bar - 2.0).max(1.0),
            fault_color(kind),
            trim(i as f64 * step),
            trim((i + 1) as f64 * step)
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.2}" y="{:.2}" text-anchor="middle" font-size="10">{count}</text>"#,
            left + (i as f64 + 0.5) * bar,
            bottom - h - 3.0
        );
    }
    // Axis labels at a few bin edges.
    let every = bins.div_ceil(5).max(1);
    for i in (0..=bins).step_by(every) {
        let tx = left + i as f64 * bar;
        let _ = writeln!(
            svg,
            r##"<text x="{tx:.2}" y="{}" text-anchor="middle" font-size="10" fill="#555">{}</text>"##,
            bottom + 14.0,
            trim(i as f64 * step)
        );
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    for factor in [1.0, 2.0, 5.0, 10.0] {
        if factor * magnitude >= raw {
            return factor * magnitude;
        }
    }
    10.0 * magnitude
}

fn trim(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round_numbers() {
        assert_eq!(nice_step(0.13), 0.2);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(25.0), 50.0);
        assert_eq!(nice_step(0.0), 1.0);
    }
}
