//! Multi-document YAML (and JSON) text to JSON values, with the line each
//! document starts on so that every later error can point into the file.

use serde_json::Value;

mod emit;
mod go_integers;
mod head;

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

/// The largest YAML file stagegate reads. Documents are parsed one at a
/// time, so a file costs its text, the values kept from it and the parser's
/// events of one document (see `tests/reliability_yaml_memory.rs` for the
/// figures); the bound keeps one file from taking the agent past its memory
/// limit all the same.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// Split `text` into documents and parse each one; empty documents (only
/// comments or whitespace) are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Document>, YamlError> {
    parse(text, None)
}

/// The `apiVersion` and `kind` of a document, read without building its value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    pub api_version: String,
    pub kind: String,
}

/// [`parse_documents`], keeping only the documents whose [`Head`] `keep`
/// accepts: the others are read for their `apiVersion` and `kind` alone and
/// never become values (stage discovery reads every YAML file of a
/// repository, and keeps a few documents). Positions (`index`) still count
/// every non-empty document. A syntax error anywhere is an error, as in
/// [`parse_documents`].
pub fn parse_documents_where(
    text: &str,
    mut keep: impl FnMut(&Head) -> bool,
) -> Result<Vec<Document>, YamlError> {
    parse(text, Some(&mut keep))
}

fn parse(
    text: &str,
    mut keep: Option<&mut dyn FnMut(&Head) -> bool>,
) -> Result<Vec<Document>, YamlError> {
    check_size(text)?;
    let mut documents = Vec::new();
    let mut index = 0;
    for (start_line, chunk) in Chunks::new(text) {
        if chunk.trim().is_empty() {
            continue;
        }
        let chunk = go_integers::rewrite(chunk);
        if let Some(keep) = keep.as_mut() {
            let Some(head) = parse_chunk::<head::MaybeHead>(&chunk, start_line)?.0 else {
                continue;
            };
            if !keep(&head) {
                index += 1;
                continue;
            }
        }
        let value: Value = parse_chunk(&chunk, start_line)?;
        if value.is_null() {
            continue;
        }
        documents.push(Document {
            index,
            line: start_line,
            value,
        });
        index += 1;
    }
    Ok(documents)
}

fn check_size(text: &str) -> Result<(), YamlError> {
    if text.len() <= MAX_FILE_BYTES {
        return Ok(());
    }
    Err(YamlError {
        line: 1,
        column: 1,
        message: format!(
            "the file is {} bytes, over stagegate's limit of {MAX_FILE_BYTES} bytes \
             for one YAML file; split it into smaller files",
            text.len()
        ),
    })
}

fn parse_chunk<T: serde::de::DeserializeOwned>(
    chunk: &str,
    start_line: usize,
) -> Result<T, YamlError> {
    serde_yaml::from_str(chunk).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        YamlError {
            line: start_line + line - 1,
            column,
            message: strip_location(&e.to_string()),
        }
    })
}

/// The documents of a text, cut at document markers (`---` and `...` at the
/// start of a line), each with the 1-based line it starts on: slices of the
/// text, never copies. Splitting by hand rather than with serde_yaml's
/// multi-document reader gives per-document line numbers, and one
/// document's parser events at a time. A piece keeps its `---` line, so
/// content on it (`--- !tag`, `--- {a: 1}`) and its columns stay as written.
struct Chunks<'a> {
    rest: &'a str,
    /// The line `rest` starts on.
    line: usize,
    done: bool,
}

impl<'a> Chunks<'a> {
    fn new(text: &'a str) -> Self {
        Chunks {
            rest: text,
            line: 1,
            done: false,
        }
    }
}

impl<'a> Iterator for Chunks<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<(usize, &'a str)> {
        if self.done {
            return None;
        }
        let start = self.line;
        let mut offset = 0;
        for (i, line) in self.rest.split_inclusive('\n').enumerate() {
            let content = line.trim_end_matches(['\n', '\r']);
            // A `---` line begins the next piece (the first line of this one
            // may be the `---` that began it).
            if i > 0 && marker_rest(content, "---").is_some() {
                let chunk = &self.rest[..offset];
                self.rest = &self.rest[offset..];
                self.line += i;
                return Some((start, chunk));
            }
            if marker_rest(content, "...").is_some_and(|rest| rest.trim().is_empty()) {
                let chunk = &self.rest[..offset];
                self.rest = &self.rest[offset + line.len()..];
                self.line += i + 1;
                return Some((start, chunk));
            }
            offset += line.len();
        }
        self.done = true;
        Some((start, self.rest))
    }
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
