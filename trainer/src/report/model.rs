//! The report as one list of blocks (title, headings, paragraphs, lists, tables, figures),
//! rendered as Markdown and as one self-contained HTML page, so both say the same things.
//! Text may hold two kinds of inline markup, written as in Markdown: `**bold**` and
//! `` `code` ``.

use std::fmt::Write as _;

/// One block of the report.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Title(String),
    Heading(String),
    Subheading(String),
    Paragraph(String),
    List(Vec<String>),
    Table(Table),
    /// Shown only on the HTML page (a figure): SVG or HTML, already escaped.
    Html(String),
    /// Shown only in the Markdown file (where the page shows a figure instead).
    MarkdownOnly(Vec<Block>),
}

/// A table: a header row and rows of cells (inline markup allowed).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Self {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }
}

/// A report: its blocks in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report(pub Vec<Block>);

impl Report {
    pub fn push(&mut self, block: Block) {
        self.0.push(block);
    }

    pub fn extend(&mut self, blocks: impl IntoIterator<Item = Block>) {
        self.0.extend(blocks);
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        for block in &self.0 {
            markdown_block(block, &mut md);
        }
        md
    }

    /// The whole page, styles included.
    pub fn html(&self) -> String {
        let mut html = String::from(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Astrid report</title><style>\
             body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}\
             table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}\
             table.heat td{line-height:1.9}table.heat span{padding:1px 2px;border-radius:3px}\
             .legend span{padding:2px 8px;margin-right:6px;border-radius:3px}</style></head><body>",
        );
        for block in &self.0 {
            html_block(block, &mut html);
        }
        html.push_str("</body></html>\n");
        html
    }
}

fn markdown_block(block: &Block, md: &mut String) {
    match block {
        Block::Title(t) => {
            let _ = writeln!(md, "# {t}\n");
        }
        Block::Heading(h) => {
            let _ = writeln!(md, "## {h}\n");
        }
        Block::Subheading(h) => {
            let _ = writeln!(md, "### {h}\n");
        }
        Block::Paragraph(p) => {
            let _ = writeln!(md, "{p}\n");
        }
        Block::List(items) => {
            for item in items {
                let _ = writeln!(md, "- {item}");
            }
            md.push('\n');
        }
        Block::Table(t) => {
            let _ = writeln!(md, "| {} |", t.header.join(" | "));
            let _ = writeln!(md, "|{}", "---|".repeat(t.header.len()));
            for row in &t.rows {
                let _ = writeln!(md, "| {} |", row.join(" | "));
            }
            md.push('\n');
        }
        Block::Html(_) => {}
        Block::MarkdownOnly(blocks) => {
            for b in blocks {
                markdown_block(b, md);
            }
        }
    }
}

fn html_block(block: &Block, html: &mut String) {
    match block {
        Block::Title(t) => {
            let _ = write!(html, "<h1>{}</h1>", inline(t));
        }
        Block::Heading(h) => {
            let _ = write!(html, "<h2>{}</h2>", inline(h));
        }
        Block::Subheading(h) => {
            let _ = write!(html, "<h3>{}</h3>", inline(h));
        }
        Block::Paragraph(p) => {
            let _ = write!(html, "<p>{}</p>", inline(p));
        }
        Block::List(items) => {
            html.push_str("<ul>");
            for item in items {
                let _ = write!(html, "<li>{}</li>", inline(item));
            }
            html.push_str("</ul>");
        }
        Block::Table(t) => {
            html.push_str("<table><tr>");
            for h in &t.header {
                let _ = write!(html, "<th>{}</th>", inline(h));
            }
            html.push_str("</tr>");
            for row in &t.rows {
                html.push_str("<tr>");
                for cell in row {
                    let _ = write!(html, "<td>{}</td>", inline(cell));
                }
                html.push_str("</tr>");
            }
            html.push_str("</table>\n");
        }
        Block::Html(raw) => html.push_str(raw),
        Block::MarkdownOnly(_) => {}
    }
}

/// Text for HTML: escaped, with `**bold**` and `` `code` `` as `<strong>` and `<code>`.
pub fn inline(text: &str) -> String {
    let escaped = escape(text);
    let mut out = String::with_capacity(escaped.len());
    let (mut bold, mut code) = (false, false);
    let mut rest = escaped.as_str();
    while let Some(c) = rest.chars().next() {
        if !code && rest.starts_with("**") && (bold || rest[2..].contains("**")) {
            out.push_str(if bold { "</strong>" } else { "<strong>" });
            bold = !bold;
            rest = &rest[2..];
        } else if c == '`' && (code || rest[1..].contains('`')) {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
            rest = &rest[1..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Text or an attribute value, escaped for HTML.
pub fn escape(s: &str) -> String {
    html_escape::encode_double_quoted_attribute(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut table = Table::new(["model", "verdict"]);
        table.row(["tiny", "**keep**"]);
        Report(vec![
            Block::Title("Astrid report".into()),
            Block::Heading("Ranking".into()),
            Block::Paragraph("**The reference is unreliable**: see `--reference-seeds`.".into()),
            Block::List(vec!["- a dash".into(), "x < y".into()]),
            Block::Table(table),
            Block::Html("<svg></svg>".into()),
            Block::MarkdownOnly(vec![Block::Paragraph("The plot is in report.html.".into())]),
        ])
    }

    #[test]
    fn both_renderings_carry_every_block() {
        let report = sample();
        let md = report.markdown();
        assert!(
            md.starts_with("# Astrid report\n\n## Ranking\n\n**The reference is unreliable**"),
            "{md}"
        );
        assert!(md.contains("- - a dash\n- x < y\n"), "{md}");
        assert!(
            md.contains("| model | verdict |\n|---|---|\n| tiny | **keep** |\n"),
            "{md}"
        );
        assert!(
            md.contains("The plot is in report.html.") && !md.contains("<svg>"),
            "{md}"
        );
        let html = report.html();
        assert!(
            html.contains("<p><strong>The reference is unreliable</strong>: see <code>--reference-seeds</code>.</p>"),
            "{html}"
        );
        assert!(html.contains("<li>- a dash</li><li>x &lt; y</li>"), "{html}");
        assert!(
            html.contains("<th>model</th>") && html.contains("<td><strong>keep</strong></td>"),
            "{html}"
        );
        assert!(
            html.contains("<svg></svg>") && !html.contains("The plot is in"),
            "{html}"
        );
    }

    #[test]
    fn unpaired_markers_are_left_as_text() {
        assert_eq!(inline("2 ** 3 and a ` tick"), "2 ** 3 and a ` tick");
        assert_eq!(inline("`a*b` **c**"), "<code>a*b</code> <strong>c</strong>");
    }
}
