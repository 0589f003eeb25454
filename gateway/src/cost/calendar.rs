//! UTC calendar months from Unix time, without a date library (Howard Hinnant's
//! `civil_from_days` / `days_from_civil`).

/// A calendar month (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    /// Year.
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
}

impl Month {
    /// The month holding `unix_secs`.
    pub fn of(unix_secs: i64) -> Self {
        let (year, month, _) = civil_from_days(unix_secs.div_euclid(86_400));
        Self { year, month }
    }

    /// The month after this one.
    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// Unix seconds of the first instant of the month.
    pub fn start_secs(self) -> i64 {
        days_from_civil(self.year, self.month, 1) * 86_400
    }

    /// `YYYY-MM`.
    pub fn label(self) -> String {
        let mut out = String::with_capacity(7);
        self.push_label(&mut out);
        out
    }

    /// Appends `YYYY-MM` to `out` (the spend key of every budgeted request: no `format!`).
    pub fn push_label(self, out: &mut String) {
        match (u16::try_from(self.year), u8::try_from(self.month)) {
            (Ok(year @ 0..=9999), Ok(month @ 0..=99)) => {
                for d in [year / 1000, year / 100 % 10, year / 10 % 10, year % 10] {
                    out.push(char::from(b'0' + d as u8));
                }
                out.push('-');
                out.push(char::from(b'0' + month / 10));
                out.push(char::from(b'0' + month % 10));
            }
            _ => out.push_str(&format!("{:04}-{:02}", self.year, self.month)),
        }
    }
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_their_starts() {
        // 2026-11-29T10:00:00Z
        let m = Month::of(1_795_946_400);
        assert_eq!(
            m,
            Month {
                year: 2026,
                month: 11
            }
        );
        assert_eq!(m.label(), "2026-11");
        assert_eq!(m.next().start_secs(), 1_796_083_200); // 2026-12-01T00:00:00Z
        assert_eq!(
            Month {
                year: 2026,
                month: 12
            }
            .next()
            .label(),
            "2027-01"
        );
        assert_eq!(Month::of(0).label(), "1970-01");
        assert_eq!(Month::of(951_782_400).label(), "2000-02"); // 2000-02-29
        assert_eq!(Month::of(1_796_083_199).label(), "2026-11");
        for (year, month) in [
            (0, 1),
            (7, 9),
            (999, 10),
            (2026, 12),
            (9999, 12),
            (10_000, 1),
            (-1, 3),
        ] {
            assert_eq!(
                Month { year, month }.label(),
                format!("{year:04}-{month:02}"),
                "{year} {month}"
            );
        }
    }
}
