//! Tables: aligned text for the terminal, Markdown for `docs/benchmarks.md`.

/// A table of strings: the first `left` columns are text (left-aligned), the rest numbers.
pub struct Table {
    pub header: Vec<&'static str>,
    pub left: usize,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn text(&self) -> String {
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .max()
                    .unwrap_or(0)
                    .max(self.header[i].len())
            })
            .collect();
        let line = |cells: Vec<&str>| {
            cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(i, (c, w))| if i < self.left { format!("{c:<w$}") } else { format!("{c:>w$}") })
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        };
        let mut out = line(self.header.clone());
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
            out.push('\n');
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("| {} |\n", self.header.join(" | "));
        out.push_str(&format!(
            "|{}\n",
            (0..self.header.len()).map(|i| if i < self.left { " --- |" } else { " ---: |" }).collect::<String>()
        ));
        for row in &self.rows {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        out
    }
}

/// Rounds to a sensible number of significant digits for a table.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_forms() {
        let t = Table {
            header: vec!["a", "bb", "c", "n"],
            left: 3,
            rows: vec![vec!["x".into(), "y".into(), "z".into(), "12".into()]],
        };
        assert_eq!(t.text(), "a  bb  c   n\nx  y   z  12\n");
        assert_eq!(t.markdown(), "| a | bb | c | n |\n| --- | --- | --- | ---: |\n| x | y | z | 12 |\n");
        assert_eq!(
            (num(12345.6), num(12.34), num(1.234), num(f64::NAN)),
            ("12346".into(), "12.3".into(), "1.23".into(), "-".into())
        );
    }
}
