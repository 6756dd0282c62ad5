//! How slow the platform is. Every command timeout, readiness wait and verify window is
//! written for a machine with real CPUs; a scenario on a slower platform (emulated CPUs)
//! sets `timeout_scale` and every one of them is multiplied by it, so nothing keeps a
//! fixed 60 s that only fits fast hosts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A factor of at least 1 applied to every timeout; `TimeoutScale::NORMAL` is 1.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct TimeoutScale(f64);

/// Above this a typo (`timeout_scale: 100`) would let a broken cluster hang a run for hours.
pub const MAX_TIMEOUT_SCALE: f64 = 20.0;

impl TimeoutScale {
    pub const NORMAL: TimeoutScale = TimeoutScale(1.0);
    /// Emulated CPUs (libvirt without KVM): `kubectl apply` on an emulated master took over
    /// 60 s where a container host takes 2 s.
    pub const EMULATED_CPU: TimeoutScale = TimeoutScale(4.0);

    /// `duration` on this platform.
    pub fn of(self, duration: Duration) -> Duration {
        duration.mul_f64(self.0)
    }

    /// `seconds` on this platform, rounded up (for timeouts written into commands).
    pub fn secs(self, seconds: u64) -> u64 {
        (seconds as f64 * self.0).ceil() as u64
    }

    pub fn factor(self) -> f64 {
        self.0
    }
}

impl Default for TimeoutScale {
    fn default() -> Self {
        TimeoutScale::NORMAL
    }
}

impl TryFrom<f64> for TimeoutScale {
    type Error = String;

    fn try_from(factor: f64) -> Result<Self, Self::Error> {
        if (1.0..=MAX_TIMEOUT_SCALE).contains(&factor) {
            Ok(TimeoutScale(factor))
        } else {
            Err(format!(
                "timeout_scale {factor} is outside 1..={MAX_TIMEOUT_SCALE}: it multiplies every command timeout and wait, which must not shrink below what a fast host needs"
            ))
        }
    }
}

impl From<TimeoutScale> for f64 {
    fn from(scale: TimeoutScale) -> f64 {
        scale.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_durations_and_rounds_seconds_up() {
        let slow = TimeoutScale::try_from(2.5).unwrap();
        assert_eq!(slow.of(Duration::from_secs(60)), Duration::from_secs(150));
        assert_eq!(slow.secs(3), 8);
        assert_eq!(TimeoutScale::NORMAL.secs(40), 40);
    }

    #[test]
    fn refuses_factors_that_shrink_or_explode_timeouts() {
        for bad in [0.5, 0.0, -1.0, 20.5, f64::NAN] {
            let err = TimeoutScale::try_from(bad).unwrap_err();
            assert!(err.contains("outside 1..=20"), "{bad}: {err}");
        }
    }
}
