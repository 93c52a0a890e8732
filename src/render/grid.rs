//! Columns without borders, as `ss` and `ps` print them: a header line, then one line per row,
//! each cell left-aligned with one space either side, trailing blanks trimmed.
//!
//! Written here rather than with comfy-table (used before): for the 11,000-row `doctor ports
//! --all` table comfy-table took a third of the command's CPU samples (perf; docs/performance.md,
//! "Where the extra time was"), since it builds, splits and measures a cell object per field;
//! this lays out the same text in one pass over the strings. The output is the text
//! comfy-table's `NOTHING` preset printed with `trim_fmt`, except that colour escapes take no
//! width here (comfy-table without its `custom_styling` feature counted them).

use unicode_width::UnicodeWidthStr;

/// The display width of `s`: terminal columns, ANSI colour sequences (`ESC [ ... m`) excluded.
pub fn width(s: &str) -> usize {
    if s.is_ascii() && !s.contains('\x1b') {
        return s.len(); // every printable ASCII character is one column
    }
    if !s.contains('\x1b') {
        return s.width();
    }
    let mut w = 0;
    let mut rest = s;
    while let Some(i) = rest.find('\x1b') {
        w += rest[..i].width();
        let seq = &rest[i + 1..];
        rest = match seq.strip_prefix('[') {
            // CSI: parameters and intermediates up to a final byte in @..=~.
            Some(csi) => match csi.find(|c: char| ('@'..='~').contains(&c)) {
                Some(end) => &csi[end + 1..],
                None => "",
            },
            None => seq,
        };
    }
    w + rest.width()
}

/// The table: `header`, then `rows`, every row as many cells as the header (a missing cell is
/// blank, an extra one is dropped). Cells must be one line each (escape control characters
/// first, see [`crate::render::escape_control`]).
pub fn grid<R: AsRef<[String]>>(header: &[&str], rows: &[R]) -> String {
    let n = header.len();
    // The width of every cell, once, on one thread (issue 24: rayon was measured no faster at
    // 9,000 rows and slower at 20-200).
    let cell_widths: Vec<Vec<usize>> = rows
        .iter()
        .map(|r| r.as_ref().iter().take(n).map(|c| width(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in &cell_widths {
        for (w, cw) in widths.iter_mut().zip(row) {
            *w = (*w).max(*cw);
        }
    }
    let total: usize = widths.iter().map(|w| w + 2).sum::<usize>() + 1;
    let mut out = String::with_capacity(total * (rows.len() + 1));
    let mut line = |cells: &mut dyn Iterator<Item = (&str, usize)>| {
        let start = out.len();
        for (i, (cell, cw)) in cells.take(n).enumerate() {
            out.push(' ');
            out.push_str(cell);
            let pad = widths[i].saturating_sub(cw) + 1;
            out.extend(std::iter::repeat_n(' ', pad));
        }
        let kept = out[start..].trim_end().len();
        out.truncate(start + kept);
        out.push('\n');
    };
    line(&mut header.iter().map(|h| (*h, width(h))));
    for (row, cw) in rows.iter().zip(&cell_widths) {
        line(
            &mut row
                .as_ref()
                .iter()
                .map(String::as_str)
                .zip(cw.iter().copied()),
        );
    }
    out.pop(); // like comfy-table's `trim_fmt`: no newline after the last line
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(rows: &[&[&str]]) -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    #[test]
    fn aligns_left_with_one_space_each_side_and_trims() {
        let rows = owned(&[
            &["127.0.0.1:29500", "LISTEN", ""],
            &["*:22", "-", "sshd -D"],
        ]);
        let text = grid(&["LOCAL", "STATE", "COMMAND"], &rows);
        assert_eq!(
            text,
            " LOCAL            STATE   COMMAND\n 127.0.0.1:29500  LISTEN\n *:22             -       sshd -D"
        );
    }

    #[test]
    fn wide_characters_and_colour_take_their_display_width() {
        assert_eq!(width("训练"), 4);
        assert_eq!(width("\x1b[32mok\x1b[0m"), 2);
        assert_eq!(width("\x1b[3"), 0);
        let rows = owned(&[&["训练", "x"], &["\x1b[31mab\x1b[0m", "y"]]);
        let text = grid(&["A", "B"], &rows);
        assert_eq!(text, " A     B\n 训练  x\n \x1b[31mab\x1b[0m    y");
    }

    #[test]
    fn header_only() {
        assert_eq!(
            grid::<Vec<String>>(&["PID", "COMMAND"], &[]),
            " PID  COMMAND"
        );
    }
}
