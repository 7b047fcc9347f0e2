//! A reader of the Prometheus text format for pages the operator does not trust: a model image
//! is the tenant's, and so is what its `/metrics` says. It never panics (no indexing, no byte
//! slicing that could land inside a character: the lints below deny them), it reads a page in
//! one pass (each line once, each label once), and it bounds what it keeps:
//!
//! * the page: [`crate::scrape`] reads at most 1 MiB of it;
//! * samples: more than [`MAX_SAMPLES`] sample lines make the page unusable;
//! * labels: a label value longer than [`MAX_LABEL_BYTES`], or more than [`MAX_LABELS`] labels
//!   on a sample, make the page unusable.
//!
//! Comments and blank lines are skipped; any other line that is not a sample (garbage such as
//! `}{`) makes the page unusable, as a parse error fails a scrape in Prometheus: a page that
//! lies about its format is no evidence of anything. The values are returned as parsed (NaN
//! and infinities included): what is usable data is for the reader of the series to say.

#![deny(
    clippy::indexing_slicing,
    clippy::string_slice,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use std::borrow::Cow;
use std::fmt;

/// Most sample lines a page may hold (a model server writes a few hundred).
pub(crate) const MAX_SAMPLES: usize = 10_000;
/// Longest label value, in bytes (route templates and digests are far shorter).
pub(crate) const MAX_LABEL_BYTES: usize = 1024;
/// Most labels on one sample.
pub(crate) const MAX_LABELS: usize = 32;

/// One sample: `name{labels} value` (a timestamp after the value is ignored).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample<'a> {
    pub(crate) name: &'a str,
    labels: Vec<(&'a str, Cow<'a, str>)>,
    pub(crate) value: f64,
}

impl Sample<'_> {
    /// The value of a label (escapes undone), None when the sample does not have it.
    pub(crate) fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value.as_ref())
    }
}

/// Why a page is unusable as a whole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// More than [`MAX_SAMPLES`] samples.
    TooManySamples,
    /// A label value longer than [`MAX_LABEL_BYTES`], on this line (from 1).
    LabelTooLong(usize),
    /// More than [`MAX_LABELS`] labels on a sample, on this line (from 1).
    TooManyLabels(usize),
    /// This line (from 1) is neither a comment, a blank nor a sample.
    Malformed(usize),
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::TooManySamples => write!(f, "more than {MAX_SAMPLES} samples"),
            Unusable::LabelTooLong(line) => write!(
                f,
                "a label value longer than {MAX_LABEL_BYTES} bytes on line {line}"
            ),
            Unusable::TooManyLabels(line) => {
                write!(f, "more than {MAX_LABELS} labels on line {line}")
            }
            Unusable::Malformed(line) => {
                write!(
                    f,
                    "line {line} is not a sample of the Prometheus text format"
                )
            }
        }
    }
}

impl From<Unusable> for String {
    fn from(unusable: Unusable) -> String {
        unusable.to_string()
    }
}

/// Calls `each` with every sample of the page, in order, until it returns an error (which is
/// returned). Comments and blanks are skipped; any other line that is not a sample makes the
/// page unusable.
pub(crate) fn samples<'a, E: From<Unusable>>(
    text: &'a str,
    mut each: impl FnMut(Sample<'a>) -> Result<(), E>,
) -> Result<(), E> {
    let mut count = 0usize;
    for (number, line) in (1usize..).zip(text.lines()) {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some(sample) = parse_line(line).map_err(|bound| match bound {
            Bound::LabelTooLong => Unusable::LabelTooLong(number),
            Bound::TooManyLabels => Unusable::TooManyLabels(number),
        })?
        else {
            return Err(Unusable::Malformed(number).into());
        };
        count = count.saturating_add(1);
        if count > MAX_SAMPLES {
            return Err(Unusable::TooManySamples.into());
        }
        each(sample)?;
    }
    Ok(())
}

/// A bound a line broke.
#[derive(Debug, PartialEq)]
enum Bound {
    LabelTooLong,
    TooManyLabels,
}

/// A sample line, None for anything else (comments, blanks, malformed lines).
fn parse_line(line: &str) -> Result<Option<Sample<'_>>, Bound> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let (name, rest) = split_name(line);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Ok(None);
    }
    let (labels, rest) = if let Some(inside) = rest.strip_prefix('{') {
        match parse_labels(inside)? {
            Some(parsed) => parsed,
            None => return Ok(None),
        }
    } else if rest.starts_with(char::is_whitespace) {
        (Vec::new(), rest)
    } else {
        return Ok(None);
    };
    let Some(value) = rest.split_whitespace().next().and_then(parse_float) else {
        return Ok(None);
    };
    Ok(Some(Sample {
        name,
        labels,
        value,
    }))
}

/// A metric or label name at the start of `text`, and what follows it.
fn split_name(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(text.len());
    text.split_at_checked(end).unwrap_or(("", text))
}

type Labels<'a> = Vec<(&'a str, Cow<'a, str>)>;

/// The labels after a `{`, up to and including the matching `}` (braces inside quoted values
/// are values), and what follows; None when malformed.
fn parse_labels(mut rest: &str) -> Result<Option<(Labels<'_>, &str)>, Bound> {
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(Some((labels, after)));
        }
        let (name, after) = split_name(rest);
        if name.is_empty() || name.contains(':') {
            return Ok(None);
        }
        let Some(after) = after.trim_start().strip_prefix('=') else {
            return Ok(None);
        };
        let Some(quoted) = after.trim_start().strip_prefix('"') else {
            return Ok(None);
        };
        // The closing quote: the first one not escaped.
        let mut escaped = false;
        let mut end = None;
        for (i, c) in quoted.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
            if i > MAX_LABEL_BYTES {
                return Err(Bound::LabelTooLong);
            }
        }
        let Some((raw, after)) = end.and_then(|end| quoted.split_at_checked(end)) else {
            return Ok(None);
        };
        if raw.len() > MAX_LABEL_BYTES {
            return Err(Bound::LabelTooLong);
        }
        if labels.len() >= MAX_LABELS {
            return Err(Bound::TooManyLabels);
        }
        let value = if raw.contains('\\') {
            Cow::Owned(unescape(raw))
        } else {
            Cow::Borrowed(raw)
        };
        labels.push((name, value));
        let Some(after) = after.strip_prefix('"') else {
            return Ok(None);
        };
        let after = after.trim_start();
        rest = match after.strip_prefix(',') {
            Some(next) => next,
            None if after.starts_with('}') => after,
            None => return Ok(None),
        };
    }
}

/// A label value with `\n`, `\"` and `\\` undone (another escaped character stands for
/// itself).
fn unescape(raw: &str) -> String {
    let mut value = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => value.push('\n'),
                Some(other) => value.push(other),
                None => value.push('\\'),
            },
            c => value.push(c),
        }
    }
    value
}

/// A sample value or an `le` bound: a float, `+Inf`, `-Inf`, `NaN`.
pub(crate) fn parse_float(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]
mod tests {
    use super::*;

    fn all(text: &str) -> Result<Vec<Sample<'_>>, Unusable> {
        let mut out = Vec::new();
        samples(text, |s| {
            out.push(s);
            Ok::<_, Unusable>(())
        })?;
        Ok(out)
    }

    #[test]
    fn samples_labels_escapes_and_braces_in_values() {
        let page = "# HELP x y\n\
                    up 1\n\
                    a{route=\"/v2/models/{name}/infer\",b=\"x\\\"y\\\\z\\n\"} 3 1700000000\n\
                    c{ d = \"e\" , } -Inf\n";
        let got = all(page).expect("usable");
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].name, got[0].value), ("up", 1.0));
        assert_eq!(got[1].label("route"), Some("/v2/models/{name}/infer"));
        assert_eq!(got[1].label("b"), Some("x\"y\\z\n"));
        assert_eq!(got[1].value, 3.0);
        assert_eq!(got[2].label("d"), Some("e"));
        assert_eq!(got[2].value, f64::NEG_INFINITY);
    }

    #[test]
    fn a_malformed_line_makes_the_page_unusable() {
        for line in [
            "}{",
            "{}",
            "a}{ 1",
            "a{b=\"c\"}",
            "a{b=\"c} 1",
            "a{b=c} 1",
            "a{b=\"c\" d=\"e\"} 1",
            "a{=\"c\"} 1",
            "1a 1",
            "a-b 1",
            "a x",
            "a{b=\"\\",
            "é{é=\"é\"} 1",
            "a{b=\"é\"}é",
        ] {
            assert_eq!(all(line), Err(Unusable::Malformed(1)), "{line:?}");
            let page = format!("# HELP x\n\nx 1\n{line}\n");
            assert_eq!(all(&page), Err(Unusable::Malformed(4)), "{line:?}");
        }
        let nan = all("a NaN\n").expect("usable");
        assert!(nan[0].value.is_nan());
    }

    #[test]
    fn bounds_make_a_page_unusable() {
        let long = format!("a{{b=\"{}\"}} 1\n", "x".repeat(MAX_LABEL_BYTES + 1));
        assert_eq!(all(&long), Err(Unusable::LabelTooLong(1)));
        let unclosed = format!("up 1\na{{b=\"{}", "x".repeat(10 * MAX_LABEL_BYTES));
        assert_eq!(all(&unclosed), Err(Unusable::LabelTooLong(2)));
        let many = (0..=MAX_LABELS)
            .map(|i| format!("l{i}=\"v\""))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            all(&format!("a{{{many}}} 1")),
            Err(Unusable::TooManyLabels(1))
        );
        let page = "a 1\n".repeat(MAX_SAMPLES);
        assert_eq!(all(&page).map(|s| s.len()), Ok(MAX_SAMPLES));
        let page = "a 1\n".repeat(MAX_SAMPLES + 1);
        assert_eq!(all(&page), Err(Unusable::TooManySamples));
        assert_eq!(
            Unusable::TooManySamples.to_string(),
            "more than 10000 samples"
        );
    }
}
