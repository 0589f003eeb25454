//! The checks that turn a built-in detector's pattern match into a detection: the Luhn check
//! for card numbers, the country length and mod-97 check for IBANs. Each takes the matched
//! text and returns the byte range (within it) that really is one, if any.

use std::ops::Range;

use gateway_schema::Detector;

/// A check of a pattern match: the byte range within it that really is a detection.
pub type Check = fn(&str) -> Option<Range<usize>>;

/// The check a detector's matches must pass (`None`: every match counts).
pub fn check(detector: Detector) -> Option<Check> {
    match detector {
        Detector::CardNumber => Some(card_number),
        Detector::Iban => Some(iban),
        _ => None,
    }
}

/// A card number: the whole match, or else its longest prefix ending at a group separator,
/// of 13 to 19 digits passing the Luhn check (so `4111 1111 1111 1111 12` still finds the
/// card before the stray group).
fn card_number(m: &str) -> Option<Range<usize>> {
    let bytes = m.as_bytes();
    // Candidate ends: the match's end, then each separator position, longest first.
    let ends = std::iter::once(bytes.len()).chain(
        (1..bytes.len())
            .rev()
            .filter(|&i| matches!(bytes[i], b' ' | b'-')),
    );
    for end in ends {
        let digits: Vec<u8> = bytes[..end]
            .iter()
            .filter(|b| b.is_ascii_digit())
            .map(|b| b - b'0')
            .collect();
        if (13..=19).contains(&digits.len()) && luhn(&digits) {
            return Some(0..end);
        }
    }
    None
}

/// The Luhn checksum of decimal digits.
fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// IBAN lengths by country (the SWIFT IBAN registry).
#[rustfmt::skip]
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AD", 24), ("AE", 23), ("AL", 28), ("AT", 20), ("AZ", 28), ("BA", 20), ("BE", 16),
    ("BG", 22), ("BH", 22), ("BI", 27), ("BR", 29), ("BY", 28), ("CH", 21), ("CR", 22),
    ("CY", 28), ("CZ", 24), ("DE", 22), ("DJ", 27), ("DK", 18), ("DO", 28), ("EE", 20),
    ("EG", 29), ("ES", 24), ("FI", 18), ("FK", 18), ("FO", 18), ("FR", 27), ("GB", 22),
    ("GE", 22), ("GI", 23), ("GL", 18), ("GR", 27), ("GT", 28), ("HR", 21), ("HU", 28),
    ("IE", 22), ("IL", 23), ("IQ", 23), ("IS", 26), ("IT", 27), ("JO", 30), ("KW", 30),
    ("KZ", 20), ("LB", 28), ("LC", 32), ("LI", 21), ("LT", 20), ("LU", 20), ("LV", 21),
    ("LY", 25), ("MC", 27), ("MD", 24), ("ME", 22), ("MK", 19), ("MN", 20), ("MR", 27),
    ("MT", 31), ("MU", 30), ("NI", 28), ("NL", 18), ("NO", 15), ("OM", 23), ("PK", 24),
    ("PL", 28), ("PS", 29), ("PT", 25), ("QA", 29), ("RO", 24), ("RS", 22), ("RU", 33),
    ("SA", 24), ("SC", 31), ("SD", 18), ("SE", 24), ("SI", 19), ("SK", 24), ("SM", 27),
    ("SO", 23), ("ST", 25), ("SV", 28), ("TL", 23), ("TN", 24), ("TR", 26), ("UA", 29),
    ("VA", 22), ("VG", 24), ("XK", 20), ("YE", 30),
];

/// An IBAN: the country's length of characters (single spaces between them allowed), ending
/// at a word boundary, with a valid mod-97 check.
fn iban(m: &str) -> Option<Range<usize>> {
    let bytes = m.as_bytes();
    let country = m.get(..2)?;
    let len = IBAN_LENGTHS.iter().find(|(c, _)| *c == country)?.1;
    let mut chars = Vec::with_capacity(len);
    let mut end = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b' ' {
            continue;
        }
        chars.push(b);
        if chars.len() == len {
            end = i + 1;
            break;
        }
    }
    if chars.len() != len || bytes.get(end).is_some_and(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    // Move the country and check digits to the end, letters become 10..35, then mod 97.
    let mut rem: u32 = 0;
    for &b in chars[4..].iter().chain(&chars[..4]) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return None,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    (rem == 1).then_some(0..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_pass_luhn_and_look_alikes_do_not() {
        for ok in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "5500-0000-0000-0004",
            "378282246310005",
            "6011111111111117",
        ] {
            assert_eq!(card_number(ok), Some(0..ok.len()), "{ok}");
        }
        for bad in [
            "4111111111111112",
            "1234 5678 9012 3456",
            "0000 0000 0000 0001",
        ] {
            assert_eq!(card_number(bad), None, "{bad}");
        }
        // A stray group after the card: the card is still found.
        assert_eq!(card_number("4111 1111 1111 1111 12"), Some(0..19));
    }

    #[test]
    fn ibans_pass_mod_97_at_their_country_length() {
        for ok in [
            "DE89370400440532013000",
            "DE89 3704 0044 0532 0130 00",
            "GB82WEST12345698765432",
            "FR1420041010050500013M02606",
            "NO9386011117947",
        ] {
            assert_eq!(iban(ok), Some(0..ok.len()), "{ok}");
        }
        for bad in [
            "DE89370400440532013001",     // checksum
            "GB82WEST1234569876543",      // too short for GB
            "ZZ89370400440532013000",     // unknown country
            "DE8937040044053201300012AB", // longer run: not at a boundary
        ] {
            assert_eq!(iban(bad), None, "{bad}");
        }
        // The match ran on into the next word: the IBAN is the country's length.
        assert_eq!(iban("DE89 3704 0044 0532 0130 00 AND"), Some(0..27));
    }
}
