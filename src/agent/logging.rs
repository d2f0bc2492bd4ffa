//! How log lines look. Text is for a person at a terminal: one line per
//! event, no module paths, interior newlines escaped so a multi-line error or
//! log tail never splits an event across lines. JSON is for machines and
//! keeps every field, the target included.

use std::io::{self, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The filter `STAGEGATE_LOG` gives (an `EnvFilter` directive), else `info`.
/// kube's own request tracing is off unless the filter names it: its
/// "failed with error …" lines say neither the call nor the server, and
/// the agent reports each failure itself, with both (#13).
fn filter() -> EnvFilter {
    let given = std::env::var("STAGEGATE_LOG").ok();
    let filter = given
        .as_deref()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    if given.is_some_and(|f| f.contains("kube_client")) {
        return filter;
    }
    match "kube_client::client::builder=off".parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// Logs as text lines on stderr, coloured when stderr is a terminal.
pub fn init_text() {
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_target(false)
        .with_writer(OneLine(io::stderr))
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .init();
}

/// Logs as one JSON object per line on stderr, every field kept.
pub fn init_json() {
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(io::stderr)
        .json()
        .init();
}

// Revisions are shortened in core (`object.rs`), where the engine uses it too.
pub use crate::core::object::short_revision;

/// A writer maker whose writers keep each event on one line.
#[derive(Clone, Copy)]
pub struct OneLine<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for OneLine<M> {
    type Writer = OneLineWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        OneLineWriter(self.0.make_writer())
    }
}

/// Escapes every newline of a buffer but its last as `\n`. The fmt layer
/// formats an event whole and hands it over in one `write_all`, so a buffer
/// here is one event.
pub struct OneLineWriter<W>(W);

impl<W: Write> Write for OneLineWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(&one_line(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

fn one_line(buf: &[u8]) -> Vec<u8> {
    let (body, end) = match buf.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (buf, &b""[..]),
    };
    let mut out = Vec::with_capacity(buf.len() + 8);
    for &byte in body {
        match byte {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(byte),
        }
    }
    out.extend_from_slice(end);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interior_newlines_are_escaped_and_the_last_one_kept() {
        let line = one_line(b"WARN stage failed error=\"Job failed\nlast log lines:\nboom\"\n");
        assert_eq!(
            line,
            b"WARN stage failed error=\"Job failed\\nlast log lines:\\nboom\"\n".to_vec()
        );
    }

    #[test]
    fn revisions_are_shortened_to_seven_hex_digits() {
        assert_eq!(
            short_revision("main@sha1:9f5ddfa3c097ef2f76f67c8fc836423cb5587e94"),
            "main@9f5ddfa"
        );
        assert_eq!(short_revision("v1.2.3@sha1:abc"), "v1.2.3@abc");
        assert_eq!(short_revision("diff"), "diff");
    }

    #[test]
    fn a_buffer_without_newline_is_unchanged() {
        assert_eq!(one_line(b"plain"), b"plain".to_vec());
    }

    #[test]
    fn an_event_written_through_the_subscriber_is_one_line() {
        use std::sync::{Arc, Mutex};

        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0
                    .lock()
                    .map_err(|_| io::ErrorKind::Other)?
                    .extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let maker = {
            let sink = sink.clone();
            move || sink.clone()
        };
        let subscriber = tracing_subscriber::fmt()
            .with_target(false)
            .with_ansi(false)
            .with_writer(OneLine(maker))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(detail = "line one\nline two", "something failed");
        });
        let text = String::from_utf8(sink.0.lock().map(|b| b.clone()).unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(r"line one\nline two"), "{text}");
        assert!(!text.contains("stagegate::"), "{text}");
    }
}
