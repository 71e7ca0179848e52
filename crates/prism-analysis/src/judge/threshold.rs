//! The threshold judge: one measured value against an inclusive range.

use prism_api::strategy::Threshold;

/// Whether `value` lies within `threshold` (bounds inclusive). The error is the sentence a
/// status condition shows, e.g. "0.12 is above the maximum 0.05". Values are printed in full:
/// rounded, a value just past a bound would read as equal to it.
pub fn within(value: f64, threshold: &Threshold) -> Result<(), String> {
    // NaN compares false with every bound, so without this check it would pass them all.
    if value.is_nan() {
        return Err("the value is NaN (not a number), which is never within a threshold".into());
    }
    if let Some(min) = threshold.min
        && value < min
    {
        return Err(format!("{value} is below the minimum {min}"));
    }
    if let Some(max) = threshold.max
        && value > max
    {
        return Err(format!("{value} is above the maximum {max}"));
    }
    Ok(())
}
