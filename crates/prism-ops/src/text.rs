//! How the CLI writes for people: tables laid out like kubectl's, ages, and API names.

use k8s_openapi::jiff::SignedDuration;
use serde::Serialize;

/// The header and lines as a table: columns left-aligned, separated by three spaces like
/// kubectl's, trailing spaces trimmed.
pub fn table<const N: usize>(header: [&str; N], lines: &[[String; N]]) -> String {
    let mut widths = header.map(|cell| cell.chars().count());
    for line in lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut push = |line: [&str; N]| {
        let mut text = String::new();
        for (i, (cell, width)) in line.iter().zip(widths).enumerate() {
            if i > 0 {
                text.push_str("   ");
            }
            text.push_str(&format!("{cell:width$}"));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    push(header);
    for line in lines {
        push(line.each_ref().map(String::as_str));
    }
    out
}

/// A duration the way kubectl prints an age (`HumanDuration` in k8s.io/apimachinery): `45s`,
/// `3m20s` under 10 minutes, `42m`, `2h5m` under 8 hours, `30h`, `4d6h` under 8 days, `120d`,
/// `2y45d` under 8 years, `9y`.
pub fn age(duration: SignedDuration) -> String {
    let seconds = duration.as_secs();
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    let days = hours / 24;
    if days < 365 * 2 {
        return format!("{days}d");
    }
    if days < 365 * 8 {
        return match days % 365 {
            0 => format!("{}y", days / 365),
            d => format!("{}y{d}d", days / 365),
        };
    }
    format!("{}y", days / 365)
}

/// The name an API enum's variant has in the API (`Achieved`, `WaitingForCommand`): the types of
/// `prism-api` serialize their variants under the names users see.
pub fn api_name(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "?".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_api::release::ClusterPhase;

    #[test]
    fn ages_read_like_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (200, "3m20s"),
            (42 * 60, "42m"),
            (3 * 3600 + 5 * 60, "3h5m"),
            (30 * 3600, "30h"),
            (4 * 86400 + 6 * 3600, "4d6h"),
            (4 * 86400, "4d"),
            (120 * 86400, "120d"),
            (3 * 365 * 86400 + 45 * 86400, "3y45d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (seconds, expected) in cases {
            assert_eq!(
                age(SignedDuration::from_secs(seconds)),
                expected,
                "{seconds}s"
            );
        }
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_and_lines_end_without_spaces() {
        let text = table(
            ["A", "LONG HEADER", "C"],
            &[
                ["wide cell".into(), "x".into(), String::new()],
                ["é".into(), "y".into(), "z".into()],
            ],
        );
        assert_eq!(
            text,
            "A           LONG HEADER   C\nwide cell   x\né           y             z\n"
        );
    }

    #[test]
    fn api_names_are_the_serialized_variants() {
        assert_eq!(api_name(&ClusterPhase::Unreachable), "Unreachable");
    }
}
