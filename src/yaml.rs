//! Multi-document YAML (and JSON) text to JSON values, with the line each
//! document starts on so that every later error can point into the file.

use serde_json::Value;

mod emit;
mod go_integers;

pub use emit::to_yaml;

/// One non-empty document of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Position among the file's non-empty documents, from 0.
    pub index: usize,
    /// 1-based line of the document's first line.
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The largest YAML file stagegate reads. The parser holds a document's
/// events and its value at once, several times the text's size; the bound
/// keeps one file from taking the agent past its memory limit.
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;

/// Split `text` into documents and parse each one; empty documents (only
/// comments or whitespace) are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Document>, YamlError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(YamlError {
            line: 1,
            column: 1,
            message: format!(
                "the file is {} bytes, over stagegate's limit of {MAX_FILE_BYTES} bytes \
                 for one YAML file; split it into smaller files",
                text.len()
            ),
        });
    }
    let mut documents = Vec::new();
    for (start_line, chunk) in split_documents(text) {
        if chunk.trim().is_empty() {
            continue;
        }
        let chunk = go_integers::rewrite(&chunk);
        let value: Value = serde_yaml::from_str(&chunk).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            YamlError {
                line: start_line + line - 1,
                column,
                message: strip_location(&e.to_string()),
            }
        })?;
        if value.is_null() {
            continue;
        }
        documents.push(Document {
            index: documents.len(),
            line: start_line,
            value,
        });
    }
    Ok(documents)
}

/// Cut at document markers (`---` and `...` at the start of a line), keeping
/// the 1-based line where each piece starts. Splitting by hand rather than
/// with serde_yaml's multi-document reader gives per-document line numbers.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    // A file's last line keeps its missing line break: `|` clips to what is
    // there, so adding one would change a block scalar's value.
    let ends_open = !text.is_empty() && !text.ends_with('\n');
    let line_count = text.lines().count();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if let Some(rest) = marker_rest(line, "---") {
            chunks.push((start, std::mem::take(&mut current)));
            start = line_no;
            // Content on the marker line (`--- !tag` or `--- {a: 1}`) belongs to
            // the new document; pad so that columns stay right.
            current.push_str(&" ".repeat(3));
            current.push_str(rest);
            current.push('\n');
        } else if marker_rest(line, "...").is_some_and(|rest| rest.trim().is_empty()) {
            chunks.push((start, std::mem::take(&mut current)));
            start = line_no + 1;
        } else {
            current.push_str(line);
            if !(ends_open && i + 1 == line_count) {
                current.push('\n');
            }
        }
    }
    chunks.push((start, current));
    chunks
}

fn marker_rest<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(marker)?;
    (rest.is_empty() || rest.starts_with([' ', '\t', '\r'])).then_some(rest)
}

/// serde_yaml appends "at line L column C"; we report our own, file-relative.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(pos) => message[..pos].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_carry_their_start_line_and_empty_ones_are_skipped() {
        let text = "# header\n---\na: 1\n---\n# only a comment\n---\nb: 2\n";
        let docs = parse_documents(text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].index, docs[0].line), (0, 2));
        assert_eq!((docs[1].index, docs[1].line), (1, 6));
        assert_eq!(docs[1].value["b"], 2);
    }

    #[test]
    fn syntax_error_points_at_the_line_in_the_file() {
        let text = "a: 1\n---\nb: 2\nc: [unclosed\n";
        let err = parse_documents(text).unwrap_err();
        assert!(err.line >= 4, "{err}");
    }

    #[test]
    fn block_scalars_and_json_parse() {
        let docs = parse_documents("{\"a\": [1, 2]}").unwrap();
        assert_eq!(docs[0].value["a"][1], 2);
        let docs = parse_documents("s: |\n  x\n  --- not a marker\n").unwrap();
        assert_eq!(docs[0].value["s"], "x\n--- not a marker\n");
    }
}
