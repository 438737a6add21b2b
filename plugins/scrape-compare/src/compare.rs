//! How far apart the endpoints' values of one series are: spread, ratio,
//! each endpoint's deviation from the median, and the outlier.
//!
//! Only finite values take part: a NaN or an infinity has no distance to
//! anything, and one of them would turn every statistic into NaN. The
//! caller decides what a non-finite value means for its conditions.

/// The comparison of one series across endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// max − min.
    pub spread: f64,
    /// max/min; see [`ratio`] for zero, negative and mixed-sign values.
    pub ratio: f64,
    pub median: f64,
    /// value − median, per endpoint (in the caller's order); `None` where
    /// the endpoint had no finite value.
    pub deviations: Vec<Option<f64>>,
    /// The endpoint strictly farthest from the median, if one is.
    pub outlier: Option<usize>,
    pub min: f64,
    pub max: f64,
}

/// Compares the values of one series, one entry per endpoint (`None`: the
/// endpoint has no value). `None` when fewer than two values are finite:
/// one value is not a comparison.
pub fn compare(values: &[Option<f64>]) -> Option<Stats> {
    let mut finite: Vec<f64> = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if finite.len() < 2 {
        return None;
    }
    finite.sort_by(f64::total_cmp);
    let (min, max) = (finite[0], finite[finite.len() - 1]);
    let mid = finite.len() / 2;
    let median = if finite.len() % 2 == 1 {
        finite[mid]
    } else {
        finite[mid - 1] / 2.0 + finite[mid] / 2.0
    };
    let deviations: Vec<Option<f64>> = values
        .iter()
        .map(|v| v.filter(|v| v.is_finite()).map(|v| v - median))
        .collect();
    Some(Stats {
        spread: max - min,
        ratio: ratio(min, max),
        median,
        outlier: outlier(&deviations, min.abs().max(max.abs())),
        deviations,
        min,
        max,
    })
}

/// max/min of values all on one side of zero, by magnitude: 2 and 6 give
/// 3, and so do −2 and −6. Equal values give 1 (so do all-zero values);
/// zero against anything else gives +Inf, as far apart as values can be.
/// Values on both sides of zero have no meaningful ratio: NaN, and a
/// `max_ratio` condition cannot pass (use `max_spread` for such series).
pub fn ratio(min: f64, max: f64) -> f64 {
    let (small, large) = if min >= 0.0 {
        (min, max)
    } else if max <= 0.0 {
        (-max, -min)
    } else {
        return f64::NAN;
    };
    if small == large {
        1.0
    } else if small == 0.0 {
        f64::INFINITY
    } else {
        large / small
    }
}

/// The endpoint farthest from the median, unless another is as far: with
/// two endpoints both always are, and naming one would be a coin toss.
/// "As far" allows for rounding, which is relative to the values (`scale`,
/// the largest magnitude), not to the deviations: 0.80 and 0.82 are
/// exactly as far from 0.81 in decimal, yet 1e-16 apart in binary.
fn outlier(deviations: &[Option<f64>], scale: f64) -> Option<usize> {
    let mut far: Vec<(usize, f64)> = deviations
        .iter()
        .enumerate()
        .filter_map(|(i, d)| d.map(|d| (i, d.abs())))
        .collect();
    far.sort_by(|a, b| b.1.total_cmp(&a.1));
    match far.as_slice() {
        [(i, first), (_, second), ..] if *first - *second > 8.0 * f64::EPSILON * scale => Some(*i),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_replicas_one_drifting() {
        let s = compare(&[Some(1.0), Some(1.5), Some(14.0)]).unwrap_or_else(|| unreachable!());
        assert_eq!(s.spread, 13.0);
        assert_eq!(s.ratio, 14.0);
        assert_eq!(s.median, 1.5);
        assert_eq!(s.deviations, vec![Some(-0.5), Some(0.0), Some(12.5)]);
        assert_eq!(s.outlier, Some(2));
    }

    #[test]
    fn missing_and_non_finite_values_stay_out() {
        let s = compare(&[
            Some(2.0),
            None,
            Some(f64::NAN),
            Some(6.0),
            Some(f64::INFINITY),
        ])
        .unwrap_or_else(|| unreachable!());
        assert_eq!((s.spread, s.ratio, s.median), (4.0, 3.0, 4.0));
        assert_eq!(s.deviations, vec![Some(-2.0), None, None, Some(2.0), None]);
        assert_eq!(
            s.outlier, None,
            "two values are equally far from their median"
        );
        assert_eq!(compare(&[Some(1.0), Some(f64::NAN)]), None);
        assert_eq!(compare(&[Some(1.0)]), None);
        assert_eq!(compare(&[]), None);
    }

    #[test]
    fn even_count_median_and_ties() {
        let s = compare(&[Some(4.0), Some(1.0), Some(3.0), Some(2.0)])
            .unwrap_or_else(|| unreachable!());
        assert_eq!(s.median, 2.5);
        assert_eq!(s.outlier, None, "1 and 4 are both 1.5 away");
        let s = compare(&[Some(0.1), Some(1.4)]).unwrap_or_else(|| unreachable!());
        assert_eq!(s.outlier, None, "rounding does not pick a side");
        let s = compare(&[Some(0.81), Some(0.80), Some(0.82)]).unwrap_or_else(|| unreachable!());
        assert_eq!(s.outlier, None, "0.80 and 0.82 are as far from 0.81");
        let s = compare(&[Some(0.81), Some(0.80), Some(0.83)]).unwrap_or_else(|| unreachable!());
        assert_eq!(s.outlier, Some(2));
        let s = compare(&[Some(7.0), Some(7.0), Some(7.0)]).unwrap_or_else(|| unreachable!());
        assert_eq!((s.spread, s.ratio, s.outlier), (0.0, 1.0, None));
    }

    #[test]
    fn ratio_rules() {
        assert_eq!(ratio(2.0, 6.0), 3.0);
        assert_eq!(ratio(-6.0, -2.0), 3.0);
        assert_eq!(ratio(0.0, 0.0), 1.0);
        assert_eq!(ratio(5.0, 5.0), 1.0);
        assert_eq!(ratio(0.0, 5.0), f64::INFINITY);
        assert_eq!(ratio(-5.0, 0.0), f64::INFINITY);
        assert!(ratio(-1.0, 1.0).is_nan());
    }

    #[test]
    fn report_b_demo_replicas() {
        // The demo's three replicas: 0.021, 0.022 and the drifting 0.301.
        let s = compare(&[Some(0.021), Some(0.022), Some(0.301)]).unwrap_or_else(|| unreachable!());
        assert_eq!(s.median, 0.022);
        assert_eq!(s.ratio, 0.301 / 0.021);
        assert_eq!(s.spread, 0.301 - 0.021);
        assert_eq!(
            s.deviations,
            vec![Some(0.021 - 0.022), Some(0.0), Some(0.301 - 0.022)]
        );
        assert_eq!(s.outlier, Some(2));
    }
}
