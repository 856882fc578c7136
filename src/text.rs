//! Bounds on the text that job input can make long: error messages, task events, the command
//! lines shown in them. A 10 MB argument must not come back whole in a gRPC header or a log line.

use std::borrow::Cow;

/// Most of an error or event message that leaves the plugin (gRPC status, task event).
pub const MAX_MESSAGE: usize = 4096;

/// `text` cut to at most `max` bytes (on a character boundary), saying how much was left out.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… ({} more bytes)",
        &text[..end],
        text.len() - end
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_on_character_boundaries_and_says_so() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("abcdef", 3), "abc… (3 more bytes)");
        // 'ü' is two bytes: the cut moves back before it.
        assert_eq!(clip("aü", 2), "a… (2 more bytes)");
        let long = "x".repeat(10 << 20);
        assert!(clip(&long, MAX_MESSAGE).len() < MAX_MESSAGE + 32);
    }
}
