//! Reading labelled texts from CSV, TSV or JSONL files, with errors that name the file, row
//! and field.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, anyhow, bail};

use super::Dataset;

/// Which columns hold the text and the label, and in what order labels become classes.
#[derive(Debug, Clone, Default)]
pub struct Columns {
    pub text: Option<String>,
    pub label: Option<String>,
    /// Label values in class order; default: sorted (false < true, numbers numerically).
    pub label_order: Option<Vec<String>>,
    /// A column whose value is kept per text (`--shift-by`: the ordered column that decides
    /// the shifted part).
    pub shift_by: Option<String>,
}

/// A text/label pair with the 1-based row it came from (the header is row 1 in CSV).
struct Row {
    text: String,
    label: String,
    row: usize,
    /// The `shift_by` column's value, when one is asked for.
    shift: Option<String>,
}

/// Reads `path` by its extension: `.csv`, `.tsv`, `.jsonl`/`.ndjson`. SCOTUS's `justice.csv`
/// is recognised by its `facts` and `first_party_winner` columns: the HTML in `facts` is
/// stripped and its entities decoded.
pub fn load(path: &Path, columns: &Columns) -> anyhow::Result<Dataset> {
    let shown = path.display().to_string();
    if path.is_dir() {
        bail!("{shown}: is a directory; give a CSV, TSV or JSONL file of labelled texts");
    }
    if !path.is_file() {
        bail!("{shown}: no such file; give a CSV, TSV or JSONL file of labelled texts");
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !["csv", "tsv", "tab", "jsonl", "ndjson"].contains(&ext.as_str()) {
        bail!("{shown}: unknown file type '.{ext}'; use .csv, .tsv or .jsonl");
    }
    // Read once: the run is bound to exactly these bytes by their hash.
    let bytes = std::fs::read(path).with_context(|| format!("{shown}: cannot read"))?;
    let sha256 = crate::util::digest::sha256_hex(&bytes);
    let text = strip_bom(&bytes);
    if text.iter().all(u8::is_ascii_whitespace) {
        bail!("{shown}: the file is empty; it needs a header row (CSV/TSV) or JSON lines, then labelled texts");
    }
    let (rows, html) = match ext.as_str() {
        "csv" => read_delimited(text, &shown, b',', columns)?,
        "tsv" | "tab" => read_delimited(text, &shown, b'\t', columns)?,
        _ => (read_jsonl(text, &shown, columns)?, false),
    };
    let mut data = build(rows, &shown, columns, html)?;
    data.sha256 = Some(sha256);
    Ok(data)
}

/// Files saved by some editors start with a UTF-8 byte-order mark; it is not part of the text.
fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes)
}

/// When a file's header splits into one column but holds the other delimiter, the file's
/// extension does not match its content.
fn delimiter_hint(headers: &[String], delimiter: u8) -> String {
    match (delimiter, headers) {
        (b',', [only]) if only.contains('\t') => {
            " (the header holds tabs: is this a TSV file? Rename it to .tsv)".to_string()
        }
        (b'\t', [only]) if only.contains(',') => {
            " (the header holds commas: is this a CSV file? Rename it to .csv)".to_string()
        }
        _ => String::new(),
    }
}

fn column_list(headers: &[String], delimiter: u8) -> String {
    let named: Vec<String> = headers.iter().filter(|h| !h.is_empty()).cloned().collect();
    if named.is_empty() {
        return "(none: the first row is empty)".to_string();
    }
    format!("{}{}", named.join(", "), delimiter_hint(headers, delimiter))
}

fn is_scotus(headers: &[String]) -> bool {
    headers.iter().any(|h| h == "facts") && headers.iter().any(|h| h == "first_party_winner")
}

fn find_column(headers: &[String], name: &str, role: &str, shown: &str, delimiter: u8) -> anyhow::Result<usize> {
    headers.iter().position(|h| h == name).ok_or_else(|| {
        anyhow!(
            "{shown}: no column '{name}' for the {role}; the columns are: {}",
            column_list(headers, delimiter)
        )
    })
}

fn read_delimited(bytes: &[u8], shown: &str, delimiter: u8, columns: &Columns) -> anyhow::Result<(Vec<Row>, bool)> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(false)
        .from_reader(bytes);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| csv_error(shown, e))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let scotus = columns.text.is_none() && columns.label.is_none() && is_scotus(&headers);
    let (text_name, label_name) = if scotus {
        ("facts".to_string(), "first_party_winner".to_string())
    } else {
        match (&columns.text, &columns.label) {
            (Some(t), Some(l)) => (t.clone(), l.clone()),
            _ => bail!(
                "{shown}: say which columns hold the text and the label with --text-col and --label-col; the columns are: {}",
                column_list(&headers, delimiter)
            ),
        }
    };
    let text_at = find_column(&headers, &text_name, "text (--text-col)", shown, delimiter)?;
    let label_at = find_column(&headers, &label_name, "label (--label-col)", shown, delimiter)?;
    let shift_at = match &columns.shift_by {
        Some(name) => Some(find_column(
            &headers,
            name,
            "shifted part (--shift-by)",
            shown,
            delimiter,
        )?),
        None => None,
    };
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(shown, e))?;
        let row = record.position().map_or(0, |p| p.line() as usize);
        rows.push(Row {
            text: record.get(text_at).unwrap_or("").to_string(),
            label: record.get(label_at).unwrap_or("").to_string(),
            row,
            shift: shift_at.map(|at| record.get(at).unwrap_or("").trim().to_string()),
        });
    }
    Ok((rows, scotus))
}

fn csv_error(shown: &str, err: csv::Error) -> anyhow::Error {
    match err.kind() {
        csv::ErrorKind::Utf8 { pos, err } => anyhow!(
            "{shown}: line {}, field {}: not UTF-8 text ({err}); re-save the file as UTF-8",
            pos.as_ref().map_or(0, |p| p.line()),
            err.field() + 1
        ),
        csv::ErrorKind::UnequalLengths { pos, expected_len, len } => anyhow!(
            "{shown}: line {}: {len} fields where the header has {expected_len}; check quoting",
            pos.as_ref().map_or(0, |p| p.line())
        ),
        _ => anyhow!("{shown}: {err}"),
    }
}

fn read_jsonl(bytes: &[u8], shown: &str, columns: &Columns) -> anyhow::Result<Vec<Row>> {
    let (Some(text_name), Some(label_name)) = (&columns.text, &columns.label) else {
        bail!("{shown}: say which fields hold the text and the label with --text-col and --label-col");
    };
    let mut rows = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let line = std::str::from_utf8(line).map_err(|e| {
            anyhow!(
                "{shown}: line {line_no}, column {}: not UTF-8 text; re-save the file as UTF-8",
                e.valid_up_to() + 1
            )
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            anyhow!(
                "{shown}: line {line_no}, column {}: not a JSON object ({e}); each line holds one object such as {{\"{text_name}\": \"...\", \"{label_name}\": \"...\"}}",
                e.column()
            )
        })?;
        if !value.is_object() {
            bail!(
                "{shown}: line {line_no}: a JSON {} where an object with \"{text_name}\" and \"{label_name}\" belongs",
                json_kind(&value)
            );
        }
        let field = |name: &str| -> anyhow::Result<String> {
            match value.get(name) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(serde_json::Value::Null) | None if name == label_name => Ok(String::new()),
                Some(v @ (serde_json::Value::Bool(_) | serde_json::Value::Number(_))) => Ok(v.to_string()),
                Some(other) => bail!("{shown}: line {line_no}: field \"{name}\" is {other}, not text"),
                None => bail!("{shown}: line {line_no}: no field \"{name}\""),
            }
        };
        rows.push(Row {
            text: field(text_name)?,
            label: field(label_name)?,
            row: line_no,
            shift: columns.shift_by.as_deref().map(field).transpose()?,
        });
    }
    Ok(rows)
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Removes HTML tags, decodes entities and folds white space.
pub fn strip_html(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    let decoded = html_escape::decode_html_entities(&out);
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Normalises a label: booleans in any case become `False`/`True`.
fn normalise_label(label: &str) -> String {
    let trimmed = label.trim();
    match trimmed.to_ascii_lowercase().as_str() {
        "true" => "True".to_string(),
        "false" => "False".to_string(),
        _ => trimmed.to_string(),
    }
}

fn default_order(values: &BTreeSet<String>) -> Vec<String> {
    let mut order: Vec<String> = values.iter().cloned().collect();
    if order.iter().all(|v| v.parse::<f64>().is_ok()) {
        order.sort_by(|a, b| {
            a.parse::<f64>()
                .unwrap_or(0.0)
                .total_cmp(&b.parse::<f64>().unwrap_or(0.0))
        });
    }
    order
}

fn build(rows: Vec<Row>, shown: &str, columns: &Columns, html: bool) -> anyhow::Result<Dataset> {
    let mut texts = Vec::new();
    let mut raw_labels = Vec::new();
    let mut shift_values = Vec::new();
    let mut dropped = 0;
    let text_field = columns.text.as_deref().unwrap_or("facts");
    for row in rows {
        let label = normalise_label(&row.label);
        if label.is_empty() {
            dropped += 1;
            continue;
        }
        let text = if html {
            strip_html(&row.text)
        } else {
            row.text.split_whitespace().collect::<Vec<_>>().join(" ")
        };
        if text.is_empty() {
            bail!(
                "{shown}: row {}: field \"{text_field}\" is empty; remove the row or fill in its text",
                row.row
            );
        }
        texts.push(text);
        raw_labels.push((label, row.row));
        shift_values.extend(row.shift);
    }
    if texts.is_empty() {
        bail!("{shown}: no labelled rows");
    }
    let values: BTreeSet<String> = raw_labels.iter().map(|(l, _)| l.clone()).collect();
    let order = match &columns.label_order {
        Some(order) => {
            let order: Vec<String> = order.iter().map(|l| normalise_label(l)).collect();
            if let Some((label, row)) = raw_labels.iter().find(|(l, _)| !order.contains(l)) {
                bail!(
                    "{shown}: row {row}: label \"{label}\" is not in --labels ({}); add it or remove the row",
                    order.join(", ")
                );
            }
            order
        }
        None => default_order(&values),
    };
    if values.len() < 2 {
        bail!(
            "{shown}: every row has the label \"{}\"; a classifier needs at least two classes",
            values.iter().next().cloned().unwrap_or_default()
        );
    }
    let labels = raw_labels
        .iter()
        .map(|(l, _)| order.iter().position(|o| o == l).unwrap_or(0))
        .collect();
    Ok(Dataset {
        texts,
        labels,
        label_names: order,
        source: shown.to_string(),
        dropped_blank_labels: dropped,
        rationale_spans: Vec::new(),
        shortcut_spans: Vec::new(),
        sha256: None,
        shift_values,
    })
}

#[cfg(test)]
#[path = "load_tests.rs"]
mod tests;
