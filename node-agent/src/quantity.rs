//! Kubernetes resource quantities (`500m`, `1.5`, `64Mi`, `1e3`, `2G`) as exact integers,
//! rounded up as `resource.Quantity`'s `MilliValue` and `Value` are. Pure.

/// An exact rational `num / den` (den a power of ten), scaled by the suffix.
struct Exact {
    num: i128,
    den: i128,
}

fn suffix_scale(suffix: &str) -> Option<(i128, i128)> {
    // (multiplier, divisor)
    let bin = |p: u32| Some((1i128 << (10 * p), 1));
    let dec = |p: i32| {
        if p >= 0 {
            Some((10i128.pow(p as u32), 1))
        } else {
            Some((1, 10i128.pow((-p) as u32)))
        }
    };
    match suffix {
        "" => dec(0),
        "n" => dec(-9),
        "u" => dec(-6),
        "m" => dec(-3),
        "k" => dec(3),
        "M" => dec(6),
        "G" => dec(9),
        "T" => dec(12),
        "P" => dec(15),
        "E" => dec(18),
        "Ki" => bin(1),
        "Mi" => bin(2),
        "Gi" => bin(3),
        "Ti" => bin(4),
        "Pi" => bin(5),
        "Ei" => bin(6),
        s if s.starts_with(['e', 'E']) => {
            let p: i32 = s[1..].parse().ok()?;
            if p.abs() > 18 {
                return None;
            }
            dec(p)
        }
        _ => None,
    }
}

fn parse(text: &str) -> Option<Exact> {
    let text = text.trim();
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let split = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.len() > 18 || whole.len() > 19 {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let mut num: i128 = digits.parse().ok()?;
    let mut den: i128 = 10i128.pow(fraction.len() as u32);
    let (mul, div) = suffix_scale(suffix)?;
    num = num.checked_mul(mul)?;
    den = den.checked_mul(div)?;
    Some(Exact {
        num: if negative { -num } else { num },
        den,
    })
}

fn ceil_div(num: i128, den: i128) -> i128 {
    let q = num / den;
    if num % den != 0 && num > 0 { q + 1 } else { q }
}

fn clamp(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// The quantity in thousandths, rounded up (`cpu: 250m` → 250, `1` → 1000); `None` when
/// `text` is not a quantity.
pub fn milli_value(text: &str) -> Option<i64> {
    let e = parse(text)?;
    Some(clamp(ceil_div(e.num.checked_mul(1000)?, e.den)))
}

/// The quantity as an integer, rounded up (`memory: 64Mi` → 67108864, `0.5` → 1).
pub fn value(text: &str) -> Option<i64> {
    let e = parse(text)?;
    Some(clamp(ceil_div(e.num, e.den)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_the_api_machinery_reads_them() {
        for (text, milli, whole) in [
            ("250m", 250, 1),
            ("1", 1000, 1),
            ("1.5", 1500, 2),
            ("0.1", 100, 1),
            ("100u", 1, 1),
            ("64Mi", 67_108_864_000, 67_108_864),
            ("1Gi", 1_073_741_824_000, 1_073_741_824),
            ("128M", 128_000_000_000, 128_000_000),
            ("1e3", 1_000_000, 1000),
            ("2k", 2_000_000, 2000),
            ("0", 0, 0),
        ] {
            assert_eq!(milli_value(text), Some(milli), "{text}");
            assert_eq!(value(text), Some(whole), "{text}");
        }
    }

    #[test]
    fn malformed_quantities_are_none() {
        for text in ["", "m", "1x", "1.2.3", "Mi", "1e99"] {
            assert_eq!(value(text), None, "{text}");
        }
    }
}
