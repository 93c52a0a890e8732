//! Process trees drawn with box characters.

use crate::analysis::tree::TreeNode;
use crate::render::{self, Paint, paint, terminal_width};

pub fn draw(node: &TreeNode, prefix: &str, last: bool, top: bool, out: &mut String, color: bool) {
    let branch = if top {
        ""
    } else if last {
        "└─ "
    } else {
        "├─ "
    };
    let id = node
        .identity
        .as_ref()
        .map(|i| i.label())
        .filter(|l| !l.is_empty())
        .map(|l| format!(" [{l}]"))
        .unwrap_or_default();
    let state = match node.state.as_str() {
        "Z" => " <zombie>",
        "D" => " <D: uninterruptible>",
        _ => "",
    };
    let socks = if node.sockets.is_empty() {
        String::new()
    } else {
        format!("  {{{}}}", node.sockets.join(", "))
    };
    let marks = if node.findings.is_empty() {
        String::new()
    } else {
        paint(
            &format!(
                "  <- {}",
                node.findings
                    .iter()
                    .map(|r| r.code())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            Paint::Red,
            color,
        )
    };
    let head = format!(
        "{prefix}{branch}{} {}{id}{state} ",
        node.pid,
        paint(node.role, Paint::Bold, color)
    );
    let command = render::escape_control(&node.command);
    let command = match terminal_width() {
        Some(w) => render::shorten(&command, w.saturating_sub(head.chars().count() + 2).max(24)),
        None => command.into_owned(),
    };
    out.push_str(&format!("{head}{command}{socks}{marks}\n"));
    let child_prefix = if top {
        prefix.to_string()
    } else {
        format!("{prefix}{}", if last { "   " } else { "│  " })
    };
    for (i, c) in node.children.iter().enumerate() {
        draw(
            c,
            &child_prefix,
            i + 1 == node.children.len(),
            false,
            out,
            color,
        );
    }
}
