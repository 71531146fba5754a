//! The report as one self-contained HTML page: inline CSS, charts as inline SVG drawn here, no
//! script, font, image or stylesheet from anywhere (readable offline and without JavaScript).
use std::fmt::Write as _;

use super::{AccessMap, Bucket, DesiredSection, Report, Router};

/// Renders `report`. Every text is escaped.
pub fn render_html(report: &Report) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Tailnet report</title><style>{STYLE}</style></head><body>\
         <h1>Tailnet report</h1><p class=\"meta\">{} &middot; generated {}</p>",
        escape(&report.source),
        escape(&report.generated_at)
    );
    for note in &report.notes {
        let _ = write!(out, "<p class=\"meta\">note: {}</p>", escape(note));
    }
    let d = &report.devices;
    section(&mut out, "devices", "Devices", |out| {
        facts(
            out,
            &[
                ("devices", d.total.to_string()),
                ("connected", d.connected.to_string()),
                ("update available", d.update_available.to_string()),
                ("unauthorized", d.unauthorized.to_string()),
                (
                    "newest client",
                    d.newest_client.clone().unwrap_or("-".into()),
                ),
            ],
        );
        chart(out, "By operating system", &d.by_os);
        chart(out, "By client version", &d.by_client_version);
        chart(out, "Disconnected, by days since last seen", &d.last_seen);
        chart(
            out,
            "Node keys expiring, next 13 weeks",
            &d.key_expiry_weeks,
        );
    });
    let r = &report.routing;
    section(&mut out, "routing", "Routing", |out| {
        chart(
            out,
            "Routers",
            &[
                bucket("subnet routers", r.subnet_router_count),
                bucket("exit nodes", r.exit_node_count),
                bucket("routes awaiting approval", r.routes_awaiting_approval),
            ],
        );
        routers(
            out,
            "Subnet routers",
            &r.subnet_routers,
            r.subnet_router_count,
        );
        routers(out, "Exit nodes", &r.exit_nodes, r.exit_node_count);
    });
    let n = &report.dns;
    section(&mut out, "dns", "DNS", |out| {
        facts(
            out,
            &[
                (
                    "MagicDNS",
                    if n.magic_dns { "on" } else { "off" }.to_owned(),
                ),
                ("nameservers", n.nameservers.join(", ")),
                ("search paths", n.search_paths.join(", ")),
            ],
        );
        let split: Vec<Bucket> = n
            .split_dns
            .iter()
            .map(|(domain, resolvers)| bucket(domain, resolvers.len()))
            .collect();
        chart(out, "Split DNS: resolvers per domain", &split);
    });
    let p = &report.policy;
    section(&mut out, "policy", "Policy", |out| {
        chart(out, "Entries per section", &p.sections);
        chart(out, "Members per group", &p.groups);
        chart(out, "Owners per tag", &p.tags);
        let _ = write!(
            out,
            "<h3>Policy tests</h3><p>{} of {} failing</p>",
            p.tests.failing, p.tests.total
        );
        if !p.tests.failures.is_empty() {
            list(out, &p.tests.failures);
        }
        heatmap(out, &p.access);
    });
    let k = &report.keys;
    section(&mut out, "keys", "Keys", |out| {
        chart(out, "Live keys by type", &k.by_type);
        chart(out, "Live keys by expiry", &k.by_expiry);
    });
    let a = &report.audit;
    section(&mut out, "audit", "Audit findings", |out| {
        let _ = write!(out, "<p>{}</p>", escape(&a.summary));
        chart(out, "Findings by kind", &a.by_kind);
    });
    if let Some(desired) = &report.desired {
        section(&mut out, "desired", "Desired vs live", |out| {
            desired_section(out, desired)
        });
    }
    out.push_str("</body></html>\n");
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#1d2330;max-width:70rem}\
h1{margin-bottom:.2rem}.meta{color:#5b6475}section{margin:2rem 0;border-top:1px solid #dde2ea}\
h3{font-size:1rem;margin:1.2rem 0 .4rem}dl{display:grid;grid-template-columns:max-content auto;\
gap:.2rem 1rem}dt{color:#5b6475}dd{margin:0}table{border-collapse:collapse}\
td,th{padding:.2rem .6rem;border-bottom:1px solid #eef1f5;text-align:left}\
svg text{font-size:12px;fill:#1d2330}.swatch{display:inline-block;width:.8rem;height:.8rem;\
margin:0 .3rem 0 .6rem;vertical-align:middle}td ul{margin:0;padding-left:1rem}";

fn bucket(label: &str, count: usize) -> Bucket {
    Bucket {
        label: label.to_owned(),
        count,
    }
}

fn section(out: &mut String, id: &str, title: &str, body: impl FnOnce(&mut String)) {
    let _ = write!(out, "<section id=\"{id}\"><h2>{}</h2>", escape(title));
    body(out);
    out.push_str("</section>");
}

fn facts(out: &mut String, rows: &[(&str, String)]) {
    out.push_str("<dl>");
    for (name, value) in rows {
        let value = if value.is_empty() { "-" } else { value };
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", escape(name), escape(value));
    }
    out.push_str("</dl>");
}

/// A horizontal bar chart; an empty one says so instead of drawing nothing.
fn chart(out: &mut String, title: &str, buckets: &[Bucket]) {
    let _ = write!(out, "<h3>{}</h3>", escape(title));
    if buckets.is_empty() {
        out.push_str("<p class=\"meta\">none</p>");
        return;
    }
    let (label_width, bar_width, row) = (200.0, 420.0, 22.0);
    let max = buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
    let height = row * buckets.len() as f64 + 4.0;
    let _ = write!(
        out,
        "<svg class=\"chart\" role=\"img\" aria-label=\"{}\" width=\"{}\" height=\"{height}\" \
         viewBox=\"0 0 {} {height}\">",
        escape(title),
        label_width + bar_width + 60.0,
        label_width + bar_width + 60.0
    );
    for (i, b) in buckets.iter().enumerate() {
        let y = i as f64 * row;
        let width = (b.count as f64 / max * bar_width).max(if b.count > 0 { 2.0 } else { 0.0 });
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{}\">{}</text><rect x=\"{label_width}\" y=\"{}\" width=\"{width:.1}\" \
             height=\"{}\" fill=\"#3b6fd8\"/><text x=\"{}\" y=\"{}\">{}</text>",
            y + 15.0,
            escape(&shorten(&b.label, 30)),
            y + 3.0,
            row - 6.0,
            label_width + width + 6.0,
            y + 15.0,
            b.count
        );
    }
    out.push_str("</svg>");
}

/// Colour of a heatmap cell: darker reaches more.
fn shade(ports: Option<u64>) -> &'static str {
    match ports {
        None => "#1f3f8f",
        Some(n) if n > 1000 => "#3b6fd8",
        Some(n) if n > 10 => "#7fa3ea",
        Some(_) => "#c3d4f7",
    }
}

const SHADES: [(&str, Option<u64>); 4] = [
    ("up to 10 ports", Some(1)),
    ("11 to 1000 ports", Some(11)),
    ("more than 1000 ports", Some(1001)),
    ("all protocols", None),
];

/// The access heatmap: identities down, destinations across, a cell per pair with access, its
/// protocols and ports in a tooltip and in the table under it.
fn heatmap(out: &mut String, map: &AccessMap) {
    out.push_str("<h3>Access heatmap (who reaches what)</h3>");
    if let Some(why) = &map.unavailable {
        let _ = write!(out, "<p class=\"meta\">{}</p>", escape(why));
        return;
    }
    if map.rows.is_empty() || map.columns.is_empty() {
        out.push_str("<p class=\"meta\">none: no devices</p>");
        return;
    }
    let (label_width, head, size) = (190.0, 150.0, 20.0);
    let width = label_width + size * map.columns.len() as f64 + 10.0;
    let height = head + size * map.rows.len() as f64 + 4.0;
    let _ = write!(
        out,
        "<svg class=\"chart heatmap\" role=\"img\" aria-label=\"access heatmap\" width=\"{width}\" \
         height=\"{height}\" viewBox=\"0 0 {width} {height}\">"
    );
    let axis_label = |a: &crate::policy::access::HeatAxis| match a.devices {
        Some(n) => format!("{} ({n})", shorten(&a.label, 24)),
        None => shorten(&a.label, 28),
    };
    for (j, column) in map.columns.iter().enumerate() {
        let x = label_width + size * j as f64 + size / 2.0 + 4.0;
        let _ = write!(
            out,
            "<text transform=\"translate({x},{}) rotate(-55)\">{}</text>",
            head - 6.0,
            escape(&axis_label(column))
        );
    }
    for (i, row) in map.rows.iter().enumerate() {
        let y = head + size * i as f64;
        let _ = write!(
            out,
            "<text x=\"0\" y=\"{}\">{}</text>",
            y + 14.0,
            escape(&axis_label(row))
        );
        for j in 0..map.columns.len() {
            let _ = write!(
                out,
                "<rect x=\"{}\" y=\"{y}\" width=\"{}\" height=\"{}\" fill=\"#f3f5f8\"/>",
                label_width + size * j as f64,
                size - 2.0,
                size - 2.0
            );
        }
    }
    for cell in &map.cells {
        let (row, column) = (&map.rows[cell.row], &map.columns[cell.column]);
        let _ = write!(
            out,
            "<rect class=\"cell\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\">\
             <title>{} -&gt; {}: {}</title></rect>",
            label_width + size * cell.column as f64,
            head + size * cell.row as f64,
            size - 2.0,
            size - 2.0,
            shade(cell.ports),
            escape(&row.label),
            escape(&column.label),
            escape(&cell.access)
        );
    }
    out.push_str("</svg><p class=\"meta\">");
    for (label, ports) in SHADES {
        let _ = write!(
            out,
            "<span class=\"swatch\" style=\"background:{}\"></span>{label} ",
            shade(ports)
        );
    }
    out.push_str(
        "&middot; a cell: some device of the row reaches some destination of the column \
         (devices in brackets)</p>",
    );
    if map.omitted_rows + map.omitted_columns > 0 {
        let _ = write!(
            out,
            "<p class=\"meta\">{} rows and {} columns with the fewest devices left out</p>",
            map.omitted_rows, map.omitted_columns
        );
    }
    out.push_str("<details><summary>Every cell</summary><table><tr><th>from</th><th>to</th><th>access</th></tr>");
    for cell in &map.cells {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&map.rows[cell.row].label),
            escape(&map.columns[cell.column].label),
            escape(&cell.access)
        );
    }
    out.push_str("</table></details>");
}

fn desired_section(out: &mut String, desired: &DesiredSection) {
    let _ = write!(
        out,
        "<p class=\"meta\">manifests: {}</p>",
        escape(&desired.path)
    );
    chart(out, "Resources by state", &desired.by_state);
    out.push_str(
        "<table><tr><th>resource</th><th>state</th><th>conditions</th><th>drift</th></tr>",
    );
    for r in &desired.resources {
        let conditions: Vec<String> = r
            .conditions
            .iter()
            .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}/{}</td><td>{}</td><td>",
            escape(&r.kind),
            escape(&r.name),
            escape(&r.state)
        );
        list(out, &conditions);
        out.push_str("</td><td>");
        list(out, &r.drift);
        out.push_str("</td></tr>");
    }
    out.push_str("</table>");
    if !desired.plan.is_empty() {
        let _ = write!(
            out,
            "<details><summary>What applying would change</summary><pre>{}</pre></details>",
            escape(&desired.plan)
        );
    }
}

fn list(out: &mut String, items: &[String]) {
    if items.is_empty() {
        out.push('-');
        return;
    }
    out.push_str("<ul>");
    for item in items {
        let _ = write!(out, "<li>{}</li>", escape(item));
    }
    out.push_str("</ul>");
}

fn routers(out: &mut String, title: &str, rows: &[Router], total: usize) {
    let _ = write!(out, "<h3>{} ({total})</h3>", escape(title));
    if rows.is_empty() {
        out.push_str("<p class=\"meta\">none</p>");
        return;
    }
    out.push_str("<table><tr><th>device</th><th>advertised</th><th>enabled</th></tr>");
    for r in rows {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.name),
            escape(&r.advertised.join(", ")),
            escape(&r.enabled.join(", "))
        );
    }
    out.push_str("</table>");
    if total > rows.len() {
        let _ = write!(out, "<p class=\"meta\">and {} more</p>", total - rows.len());
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(max - 1).collect();
    short.push('…');
    short
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_empty_charts_say_none() {
        let mut out = String::new();
        chart(&mut out, "<b>", &[]);
        assert!(out.contains("&lt;b&gt;") && out.contains("none"), "{out}");
        let mut out = String::new();
        chart(&mut out, "t", &[bucket("a\"<x>", 3), bucket("b", 0)]);
        assert!(out.contains("a&quot;&lt;x&gt;"), "{out}");
        assert!(
            out.contains("width=\"420.0\""),
            "the largest bar is full width: {out}"
        );
    }
}
