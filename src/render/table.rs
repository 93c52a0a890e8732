//! The `doctor ports` table.

use comfy_table::{ContentArrangement, Table};

use crate::analysis::holders::Holder;
use crate::render::{self, terminal_width};

pub fn ports_table(rows: &[Holder], scope: &[u16]) -> String {
    if rows.is_empty() {
        let list = scope
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        return if scope.is_empty() {
            "no listening sockets\n".into()
        } else {
            format!("no sockets on the rendezvous ports ({list})\n")
        };
    }
    let mut table = Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    table.set_header([
        "PORT", "STATE", "PID", "ROLE", "RANK", "JOB", "AGE", "COMMAND",
    ]);
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|h| {
            let state = match (&h.remote, h.state.as_str()) {
                (Some(r), s) if s != "LISTEN" && !h.local.ends_with(&format!(":{}", h.port)) => {
                    format!("{s} ->{}", r.rsplit(':').next().unwrap_or(""))
                }
                (_, s) => s.to_string(),
            };
            [
                h.port.to_string(),
                if h.proto == "udp" {
                    format!("udp {state}")
                } else {
                    state
                },
                h.pid.map_or("-".into(), |p| p.to_string()),
                h.role.unwrap_or("-").to_string(),
                h.identity
                    .as_ref()
                    .map(|i| i.label())
                    .filter(|l| !l.is_empty())
                    .unwrap_or("-".into()),
                h.job.clone().unwrap_or("-".into()),
                h.age_seconds.map_or("-".into(), render::age),
                h.command.clone().unwrap_or("-".into()),
            ]
        })
        .collect();
    let fixed: usize = (0..7)
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
                .max(5)
                + 2
        })
        .sum();
    let width = terminal_width();
    for mut r in cells {
        if let Some(w) = width {
            r[7] = render::shorten(&r[7], w.saturating_sub(fixed).max(20));
        }
        table.add_row(r);
    }
    table.set_content_arrangement(ContentArrangement::Disabled);
    let mut s = table.trim_fmt();
    s.push('\n');
    s
}
