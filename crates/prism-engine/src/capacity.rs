use std::fmt;

use prism_api::application::FullCapacity;
use prism_api::strategy::Share;
use serde::Serialize;

/// What one version runs in one cluster: a replica count, or the bounds of its autoscaler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Capacity {
    Replicas(u32),
    Autoscaled { min: u32, max: u32 },
}

impl Capacity {
    pub const ZERO: Capacity = Capacity::Replicas(0);

    /// This capacity's `share`, taken of a template that runs `self` at 100%. For an autoscaled
    /// template the share applies to both bounds.
    pub fn share(self, share: Share) -> Capacity {
        match self {
            Capacity::Replicas(n) => Capacity::Replicas(share.of(n)),
            Capacity::Autoscaled { min, max } => Capacity::Autoscaled {
                min: share.of(min),
                max: share.of(max),
            },
        }
    }

    /// The pods that must be ready before this capacity counts as in place: all replicas, or the
    /// autoscaler's lower bound.
    pub fn floor(self) -> u32 {
        match self {
            Capacity::Replicas(n) => n,
            Capacity::Autoscaled { min, .. } => min,
        }
    }

    pub fn is_zero(self) -> bool {
        self.bounds() == (0, 0)
    }

    /// True when some bound of `self` is above the same bound of `other`.
    pub fn exceeds(self, other: Capacity) -> bool {
        let (min, max) = self.bounds();
        let (other_min, other_max) = other.bounds();
        min > other_min || max > other_max
    }

    /// Each bound at the larger of the two, shaped like `self`.
    pub fn at_least(self, other: Capacity) -> Capacity {
        let (min, max) = self.bounds();
        let (other_min, other_max) = other.bounds();
        self.with_bounds(min.max(other_min), max.max(other_max))
    }

    /// `self` with its floor set to `floor`; an autoscaler's upper bound stays at least the floor.
    pub fn with_floor(self, floor: u32) -> Capacity {
        let (_, max) = self.bounds();
        self.with_bounds(floor, max.max(floor))
    }

    fn bounds(self) -> (u32, u32) {
        match self {
            Capacity::Replicas(n) => (n, n),
            Capacity::Autoscaled { min, max } => (min, max),
        }
    }

    fn with_bounds(self, min: u32, max: u32) -> Capacity {
        match self {
            Capacity::Replicas(_) => Capacity::Replicas(min),
            Capacity::Autoscaled { .. } => Capacity::Autoscaled { min, max },
        }
    }
}

impl From<FullCapacity> for Capacity {
    fn from(full: FullCapacity) -> Capacity {
        match full {
            FullCapacity::Replicas(n) => Capacity::Replicas(n),
            FullCapacity::Autoscaled(bounds) => Capacity::Autoscaled {
                min: bounds.min,
                max: bounds.max,
            },
        }
    }
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capacity::Replicas(n) => write!(f, "{n}"),
            Capacity::Autoscaled { min, max } => write!(f, "{min}-{max}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_of_an_autoscaled_template_applies_to_both_bounds() {
        let base = Capacity::Autoscaled { min: 4, max: 10 };
        assert_eq!(
            base.share(Share::Percent(25)),
            Capacity::Autoscaled { min: 1, max: 3 }
        );
    }

    #[test]
    fn a_share_of_replicas_rounds_up() {
        assert_eq!(
            Capacity::Replicas(3).share(Share::Percent(10)),
            Capacity::Replicas(1)
        );
    }

    #[test]
    fn an_autoscaled_capacity_exceeds_another_when_either_bound_is_above() {
        let low = Capacity::Autoscaled { min: 2, max: 5 };
        assert!(Capacity::Autoscaled { min: 2, max: 6 }.exceeds(low));
        assert!(!low.exceeds(low));
        assert!(Capacity::Replicas(3).exceeds(Capacity::Replicas(2)));
    }

    #[test]
    fn with_floor_keeps_the_upper_bound_at_least_the_floor() {
        let hpa = Capacity::Autoscaled { min: 2, max: 5 };
        assert_eq!(hpa.with_floor(7), Capacity::Autoscaled { min: 7, max: 7 });
        assert_eq!(hpa.with_floor(1), Capacity::Autoscaled { min: 1, max: 5 });
    }
}
