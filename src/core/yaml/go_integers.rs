//! Plain integers as kustomize's YAML reader (Go's yaml.v3) reads them.
//!
//! yaml.v3 resolves a plain scalar with Go's `strconv.ParseInt(s, 0, 64)`, so
//! `defaultMode: 0400` is the octal 256 and `1_000` is 1000; serde_yaml reads
//! both as strings. A file mode written the C way is common in manifests, and
//! the API server refuses the string, so the renderer reads them as kustomize
//! does: such a token is rewritten to its decimal value before parsing.
//!
//! Only the unambiguous places are rewritten: a mapping value after `: ` and a
//! block sequence item after `- `, with nothing but a comment (or, on a line
//! with a flow collection, a `,`, `]` or `}`) after it. Block scalars are left
//! alone.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

static TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?P<pre>^[ \t]*(?:-[ \t]+)+|:[ \t]+)(?P<num>[-+]?(?:0[0-9]+(?:_[0-9]+)*|[1-9][0-9]*(?:_[0-9]+)+))(?P<post>[ \t]*$|[ \t]+#|[ \t]*[,\]}])",
    )
    .expect("the pattern is valid")
});

static BLOCK_START: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[ \t])[|>](?:[+-]?[1-9]?|[1-9][+-])[ \t]*(?:#.*)?$")
        .expect("the pattern is valid")
});

/// `text` with Go-style integers turned into decimal ones; borrowed when
/// there is nothing to change (most files).
pub(crate) fn rewrite(text: &str) -> Cow<'_, str> {
    if !may_hold_go_integer(text.as_bytes()) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut block_indent: Option<usize> = None;
    let mut changed = false;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let indent = content.len() - content.trim_start_matches([' ', '\t']).len();
        if let Some(parent) = block_indent {
            if content.trim().is_empty() || indent > parent {
                out.push_str(line);
                continue;
            }
            block_indent = None;
        }
        if BLOCK_START.is_match(content) {
            block_indent = Some(indent);
        }
        match rewrite_line(content) {
            Some(new) => {
                changed = true;
                out.push_str(&new);
                out.push_str(&line[content.len()..]);
            }
            None => out.push_str(line),
        }
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(text)
    }
}

/// A digit `0` followed by a digit, or an underscore after a digit, in a
/// token that starts after a space or tab (with an optional sign): what
/// [`TOKEN`] needs. Names such as `svc-00012` do not send a file through the
/// line-by-line rewrite.
fn may_hold_go_integer(bytes: &[u8]) -> bool {
    bytes.windows(2).enumerate().any(|(i, w)| {
        // An octal token starts with its `0` (`8080` is no candidate).
        let octal = w[0] == b'0'
            && w[1].is_ascii_digit()
            && (i == 0 || !(bytes[i - 1].is_ascii_digit() || bytes[i - 1] == b'_'));
        let underscored = w[0].is_ascii_digit() && w[1] == b'_';
        (octal || underscored) && starts_after_blank(bytes, i)
    })
}

/// Whether the run of digits and underscores holding `at` begins after a
/// space or tab, or after a sign that does.
fn starts_after_blank(bytes: &[u8], at: usize) -> bool {
    let mut start = at;
    while start > 0 && (bytes[start - 1].is_ascii_digit() || bytes[start - 1] == b'_') {
        start -= 1;
    }
    if start > 0 && matches!(bytes[start - 1], b'+' | b'-') {
        start -= 1;
    }
    start > 0 && matches!(bytes[start - 1], b' ' | b'\t')
}

fn rewrite_line(content: &str) -> Option<String> {
    let caps = TOKEN.captures(content)?;
    let post = caps.name("post")?.as_str();
    let in_flow = content.contains(['{', '[']);
    if post.trim_start().starts_with([',', ']', '}']) && !in_flow {
        return None;
    }
    let num = caps.name("num")?;
    let value = go_integer(num.as_str())?;
    let mut new = String::with_capacity(content.len());
    new.push_str(&content[..num.start()]);
    new.push_str(&value.to_string());
    new.push_str(&content[num.end()..]);
    Some(new)
}

/// The value Go's yaml.v3 gives the token: a leading `0` means octal; a
/// leading `0` with an 8 or 9 in it fails as an integer and reads as the
/// decimal float of the same digits.
fn go_integer(token: &str) -> Option<i64> {
    let (negative, digits) = match token.as_bytes().first() {
        Some(b'-') => (true, &token[1..]),
        Some(b'+') => (false, &token[1..]),
        _ => (false, token),
    };
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    let octal = digits.len() > 1 && digits.starts_with('0') && !token.contains('_');
    let magnitude = if octal && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        i64::from_str_radix(&digits, 8).ok()?
    } else if digits.starts_with('0') && token.contains('_') {
        // Go reads `0_1` as octal too; rare enough to leave to the string.
        return None;
    } else {
        digits.parse::<i64>().ok()?
    };
    Some(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_modes_and_underscored_integers_become_decimal() {
        let text = "a: 0400\nb: [x]\nc: {defaultMode: 0644}\nd:\n- 1_000\ne: 0755 # mode\n";
        assert_eq!(
            rewrite(text),
            "a: 256\nb: [x]\nc: {defaultMode: 420}\nd:\n- 1000\ne: 493 # mode\n"
        );
    }

    #[test]
    fn strings_block_scalars_and_tags_are_left_alone() {
        for text in [
            "a: \"0400\"\n",
            "image: repo:0400\n",
            "s: |\n  mode: 0400\n  - 0400\n",
            "cmd: chmod 0400 file\n",
            "a: 0400,x\n",
            "a: 0400#x\n",
            "v: 1.0400\n",
        ] {
            assert_eq!(rewrite(text), text, "{text}");
        }
    }

    #[test]
    fn only_tokens_after_a_blank_send_a_text_through_the_rewrite() {
        for text in [
            "name: svc-00012\n",
            "image: app:v1_2\n",
            "x: a0400\n",
            "port: 8080\n",
        ] {
            assert!(!may_hold_go_integer(text.as_bytes()), "{text}");
        }
        for text in ["a: 0400\n", "- -010\n", "b: 1_000\n", "c:\t+007\n"] {
            assert!(may_hold_go_integer(text.as_bytes()), "{text}");
        }
    }

    #[test]
    fn block_scalar_ends_where_indentation_returns() {
        let text = "s: >-\n  0400\nmode: 0400\n";
        assert_eq!(rewrite(text), "s: >-\n  0400\nmode: 256\n");
    }

    #[test]
    fn leading_zero_with_eight_or_nine_reads_as_its_decimal_digits() {
        assert_eq!(go_integer("08"), Some(8));
        assert_eq!(go_integer("-010"), Some(-8));
        assert_eq!(go_integer("+0"), Some(0));
    }
}
