//! Text that people type: one rule per kind of field, enforced by every
//! aggregate's `decide`, so the API, the saga and any other caller get the
//! same answer.
//!
//! A [`TextRule`] says how long a field may be (in Unicode scalar values,
//! i.e. Rust `char`s) and whether it is free text. No text may contain a
//! control character (Unicode category `Cc`: U+0000–U+001F, U+007F–U+009F);
//! free text (reasons, notes) may contain `\n` and `\t`, nothing else from
//! that range. PostgreSQL refuses U+0000 in `jsonb` and `text`, so a NUL that
//! reached the event store would stop every reader of that event.
//!
//! | field | rule | length |
//! |---|---|---|
//! | reason (reject, cancel, unassign, fail, flag, refund, void, override) | [`REASON`], free text | 1..=500 |
//! | delivery address street | [`STREET`] | 1..=200 |
//! | delivery address city | [`CITY`] | 1..=100 |
//! | delivery address postal code | [`POSTAL_CODE`] | 1..=16 |
//! | card token / payment-method reference | [`CARD_TOKEN`] | 1..=255 |
//! | restaurant, menu item and rider names | [`NAME`] | 1..=200 |

/// How one kind of text field is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRule {
    /// The field's name in errors, e.g. `reason`, `delivery_address.street`.
    pub field: &'static str,
    /// Most characters (`char`s) allowed.
    pub max_chars: usize,
    /// Free text: `\n` and `\t` are allowed.
    pub free_text: bool,
}

/// Reasons given for rejecting, cancelling, failing, refunding...: free text, 1..=500.
pub const REASON: TextRule = TextRule::free_text("reason", 500);
/// Street and house number of a delivery address, 1..=200.
pub const STREET: TextRule = TextRule::line("delivery_address.street", 200);
/// City of a delivery address, 1..=100.
pub const CITY: TextRule = TextRule::line("delivery_address.city", 100);
/// Postal code of a delivery address, 1..=16.
pub const POSTAL_CODE: TextRule = TextRule::line("delivery_address.postal_code", 16);
/// A card token as the client sends it (handed to the provider, never stored), 1..=255.
pub const CARD_TOKEN: TextRule = TextRule::line("payment_method.card_token", 255);
/// Names of restaurants, menu items and riders, 1..=200.
pub const NAME: TextRule = TextRule::line("name", 200);

/// Why a text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// The text is empty or only whitespace.
    #[error("{field} must not be empty")]
    Empty {
        /// The field that was refused.
        field: &'static str,
    },
    /// The text is longer than the field allows.
    #[error("{field} has {chars} characters; at most {max} are allowed")]
    TooLong {
        /// The field that was refused.
        field: &'static str,
        /// Characters given.
        chars: usize,
        /// Characters allowed.
        max: usize,
    },
    /// The text holds a control character the field does not allow.
    #[error("{field} contains the control character U+{code_point:04X} at character {position}")]
    ControlCharacter {
        /// The field that was refused.
        field: &'static str,
        /// The control character's Unicode code point.
        code_point: u32,
        /// Its 0-based character position in the text.
        position: usize,
    },
}

impl TextError {
    /// Stable code: `text_required`, `text_too_long`, `text_control_character`.
    pub fn code(&self) -> &'static str {
        match self {
            TextError::Empty { .. } => "text_required",
            TextError::TooLong { .. } => "text_too_long",
            TextError::ControlCharacter { .. } => CONTROL_CHARACTER_CODE,
        }
    }
}

/// The code of [`TextError::ControlCharacter`] (also used by the API's guard
/// on every JSON body).
pub const CONTROL_CHARACTER_CODE: &str = "text_control_character";

/// Whether `c` may appear in text (`free_text` allows `\n` and `\t`).
pub fn is_allowed_char(c: char, free_text: bool) -> bool {
    !c.is_control() || (free_text && matches!(c, '\n' | '\t'))
}

/// The first control character not allowed in free text, if any, as
/// `(position, char)`. The API runs this on every string of every body.
pub fn first_forbidden_char(text: &str, free_text: bool) -> Option<(usize, char)> {
    text.chars()
        .enumerate()
        .find(|(_, c)| !is_allowed_char(*c, free_text))
}

impl TextRule {
    /// A single-line field: no control character at all.
    const fn line(field: &'static str, max_chars: usize) -> TextRule {
        TextRule {
            field,
            max_chars,
            free_text: false,
        }
    }

    /// A free-text field: `\n` and `\t` allowed.
    const fn free_text(field: &'static str, max_chars: usize) -> TextRule {
        TextRule {
            field,
            max_chars,
            free_text: true,
        }
    }

    /// Check `text` against this rule. Blank (only whitespace) counts as empty.
    pub fn check(&self, text: &str) -> Result<(), TextError> {
        if text.trim().is_empty() {
            return Err(TextError::Empty { field: self.field });
        }
        let chars = text.chars().count();
        if chars > self.max_chars {
            return Err(TextError::TooLong {
                field: self.field,
                chars,
                max: self.max_chars,
            });
        }
        if let Some((position, c)) = first_forbidden_char(text, self.free_text) {
            return Err(TextError::ControlCharacter {
                field: self.field,
                code_point: u32::from(c),
                position,
            });
        }
        Ok(())
    }

    /// The same rule reported under another field name.
    pub const fn named(self, field: &'static str) -> TextRule {
        TextRule { field, ..self }
    }
}

/// A reason that passed [`REASON`]: 1..=500 characters, no control
/// characters but `\n` and `\t`. Cannot hold anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

impl Reason {
    /// Check `text` against [`REASON`]; only a valid reason is returned.
    pub fn parse(text: impl Into<String>) -> Result<Self, TextError> {
        let text = text.into();
        REASON.check(&text)?;
        Ok(Self(text))
    }

    /// The reason's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The reason's text, owned.
    pub fn into_inner(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_of_500_characters_passes_and_501_is_too_long() {
        let ok = "é".repeat(500);
        assert_eq!(Reason::parse(ok.clone()).map(Reason::into_inner), Ok(ok));
        let too_long = "x".repeat(501);
        assert_eq!(
            Reason::parse(too_long),
            Err(TextError::TooLong {
                field: "reason",
                chars: 501,
                max: 500
            })
        );
    }

    #[test]
    fn free_text_allows_newline_and_tab_only() {
        assert!(REASON.check("line one\n\tline two").is_ok());
        for bad in ["a\u{0}b", "a\rb", "a\u{7f}b", "a\u{85}b", "a\u{1b}[31mb"] {
            let err = REASON.check(bad).unwrap_err();
            assert_eq!(err.code(), "text_control_character", "{bad:?}");
        }
    }

    #[test]
    fn single_line_fields_refuse_newlines_and_nul() {
        assert!(STREET.check("Oranienstraße 25").is_ok());
        assert_eq!(
            STREET.check("Main St\u{0} 1"),
            Err(TextError::ControlCharacter {
                field: "delivery_address.street",
                code_point: 0,
                position: 7
            })
        );
        assert_eq!(
            CITY.check("Ber\nlin").unwrap_err().code(),
            "text_control_character"
        );
        assert_eq!(
            POSTAL_CODE.check(&"1".repeat(17)).unwrap_err().code(),
            "text_too_long"
        );
    }

    #[test]
    fn blank_is_empty() {
        assert_eq!(
            CITY.check("  \t"),
            Err(TextError::Empty {
                field: "delivery_address.city"
            })
        );
    }
}
