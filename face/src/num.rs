//! Exact `floor` without libm.
//!
//! On baseline x86-64 (no SSE4.1) `f64::floor` is a call into libm; the landmark cascade and
//! the chip resampler call it per sample and per pixel, where it cost a tenth of their time.

/// `v.floor()` for every `v` whose floor fits in an `i64`; beyond that (and for ±∞) the
/// nearest `i64` bound, and 0 for NaN — what `v.floor() as i64` gives there too, so casting
/// the result to an integer never differs from casting `v.floor()`.
#[inline]
pub(crate) fn floor(v: f64) -> f64 {
    let f = (v as i64) as f64;
    if f > v { f - 1.0 } else { f }
}

#[cfg(test)]
mod tests {
    use super::floor;

    #[test]
    fn floor_matches_std_where_it_is_used() {
        let mut x = -1000.0;
        while x < 1000.0 {
            assert_eq!(floor(x), x.floor(), "{x}");
            assert_eq!(floor(x) as usize, x.floor() as usize, "{x}");
            x += 0.0625 + 1e-9;
        }
        for v in [
            0.0,
            -0.0,
            0.5,
            -0.5,
            1e-300,
            -1e-300,
            4503599627370497.0,
            -4503599627370497.5,
            1e18,
            -1e18,
            1e300,
            -1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
        ] {
            assert_eq!(floor(v) as i64, v.floor() as i64, "{v}");
            if v.abs() < 9e18 {
                assert_eq!(floor(v), v.floor(), "{v}");
            }
        }
    }
}
