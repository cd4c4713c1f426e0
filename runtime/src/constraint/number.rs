//! JSON numbers, byte by byte, with exact `minimum`/`maximum` checks.
//!
//! A number is `-? (0 | [1-9][0-9]*) (. [0-9]+)?` — no exponent (`1e999`
//! does not parse in every client), and a digit cap so a model cannot write
//! forever. With bounds, values are kept as integers scaled by `10^sd`
//! (`sd` fraction digits at most): every prefix has an exact interval of
//! reachable values, so a byte is only allowed when some completion ends in
//! range — the constraint never walks into a dead end.
//!
//! Why the bound check agrees with a validator's: for a decimal text with
//! scaled value `N < 2^53`, a JSON parser yields the correctly rounded
//! `N / 10^sd`, which is exactly `(N as f64) / 10^sd` (one IEEE division of
//! exact operands). Bounds are turned into the smallest / largest `N` whose
//! value compares as the validator would compare it.

/// Fraction digits of a bounded `number`.
const BOUNDED_FRAC: u32 = 6;
/// Integer digits of a bounded number (`10^9 · 10^6 < 2^53`).
const BOUNDED_INT: u32 = 9;
/// Integer / fraction digits of an unbounded number.
const FREE_DIGITS: u32 = 15;

/// How a number node may look.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NumSpec {
    /// `integer` (no fraction).
    pub integer: bool,
    /// Inclusive scaled bounds `[lo, hi]` (value · 10^sd), if any.
    pub bounds: Option<(i128, i128)>,
    /// Scale digits (fraction digits counted in bounds).
    pub sd: u32,
    /// Most integer digits.
    pub max_int: u32,
    /// Most fraction digits.
    pub max_frac: u32,
}

/// A bound as the schema gives it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bound {
    pub value: f64,
    pub exclusive: bool,
}

fn pow10(n: u32) -> i128 {
    10i128.pow(n)
}

impl NumSpec {
    /// A number spec; errors when no number satisfies the bounds.
    pub fn new(integer: bool, lo: Option<Bound>, hi: Option<Bound>) -> Result<NumSpec, String> {
        if lo.is_none() && hi.is_none() {
            return Ok(NumSpec {
                integer,
                bounds: None,
                sd: 0,
                max_int: FREE_DIGITS,
                max_frac: if integer { 0 } else { FREE_DIGITS },
            });
        }
        let sd = if integer { 0 } else { BOUNDED_FRAC };
        let s = pow10(sd) as f64;
        let limit = pow10(BOUNDED_INT + sd) - 1;
        let value = |n: i128| (n as f64) / s;
        let lo_s = match lo {
            None => -limit,
            Some(b) => {
                if !b.value.is_finite() {
                    return Err(format!("minimum {} is not a finite number", b.value));
                }
                let ok = |n: i128| {
                    if b.exclusive {
                        value(n) > b.value
                    } else {
                        value(n) >= b.value
                    }
                };
                let mut c = ((b.value * s).ceil()).clamp(-(limit as f64), limit as f64) as i128;
                // `b.value * s` may round; settle on the exact smallest N.
                for _ in 0..4 {
                    if c > -limit && ok(c - 1) {
                        c -= 1;
                    }
                }
                for _ in 0..4 {
                    if !ok(c) {
                        c += 1;
                    }
                }
                c.max(-limit)
            }
        };
        let hi_s = match hi {
            None => limit,
            Some(b) => {
                if !b.value.is_finite() {
                    return Err(format!("maximum {} is not a finite number", b.value));
                }
                let ok = |n: i128| {
                    if b.exclusive {
                        value(n) < b.value
                    } else {
                        value(n) <= b.value
                    }
                };
                let mut c = ((b.value * s).floor()).clamp(-(limit as f64), limit as f64) as i128;
                for _ in 0..4 {
                    if c < limit && ok(c + 1) {
                        c += 1;
                    }
                }
                for _ in 0..4 {
                    if !ok(c) {
                        c -= 1;
                    }
                }
                c.min(limit)
            }
        };
        if lo_s > hi_s {
            return Err(format!(
                "no {} satisfies the minimum/maximum (supported range: |value| < 1e{BOUNDED_INT}{})",
                if integer { "integer" } else { "number" },
                if integer {
                    String::new()
                } else {
                    format!(", at most {BOUNDED_FRAC} fraction digits")
                }
            ));
        }
        Ok(NumSpec {
            integer,
            bounds: Some((lo_s, hi_s)),
            sd,
            max_int: BOUNDED_INT,
            max_frac: sd,
        })
    }
}

/// Where in a number the matcher is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumPh {
    /// Nothing yet.
    Start,
    /// After `-`.
    Minus,
    /// Integer part is `0` (no more integer digits).
    Zero,
    /// In the integer part.
    Int,
    /// After `.`.
    Dot,
    /// In the fraction.
    Frac,
}

/// A number being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NumState {
    pub ph: NumPh,
    pub neg: bool,
    pub int_digits: u8,
    pub frac_digits: u8,
    /// All digits so far as one integer (integer part then fraction digits).
    pub mant: i128,
}

impl NumState {
    /// A number with nothing written.
    pub const START: NumState = NumState {
        ph: NumPh::Start,
        neg: false,
        int_digits: 0,
        frac_digits: 0,
        mant: 0,
    };

    /// Whether the text so far is a whole number in range.
    pub fn is_complete(&self, spec: &NumSpec) -> bool {
        if !matches!(self.ph, NumPh::Zero | NumPh::Int | NumPh::Frac) {
            return false;
        }
        match spec.bounds {
            None => true,
            Some((lo, hi)) => {
                let mag = self.mant * pow10(spec.sd.saturating_sub(self.frac_digits as u32));
                let v = if self.neg { -mag } else { mag };
                lo <= v && v <= hi
            }
        }
    }

    /// The state after byte `b`, if `b` may follow and a completion in range remains.
    pub fn step(&self, spec: &NumSpec, b: u8) -> Option<NumState> {
        let mut n = *self;
        let digit = b.is_ascii_digit().then(|| i128::from(b - b'0'));
        match (self.ph, b, digit) {
            (NumPh::Start, b'-', _) => {
                n.ph = NumPh::Minus;
                n.neg = true;
            }
            // "-0" is an integer to a schema, but some parsers read it as the float -0.0.
            (NumPh::Minus, _, Some(0)) if spec.integer => return None,
            (NumPh::Start | NumPh::Minus, _, Some(d)) => {
                n.ph = if d == 0 { NumPh::Zero } else { NumPh::Int };
                n.mant = d;
                n.int_digits = 1;
            }
            (NumPh::Int, _, Some(d)) if u32::from(self.int_digits) < spec.max_int => {
                n.mant = self.mant * 10 + d;
                n.int_digits += 1;
            }
            (NumPh::Zero | NumPh::Int, b'.', _) if !spec.integer && spec.max_frac > 0 => {
                n.ph = NumPh::Dot;
            }
            (NumPh::Dot, _, Some(d)) => {
                n.ph = NumPh::Frac;
                n.mant = self.mant * 10 + d;
                n.frac_digits = 1;
            }
            (NumPh::Frac, _, Some(d)) if u32::from(self.frac_digits) < spec.max_frac => {
                n.mant = self.mant * 10 + d;
                n.frac_digits += 1;
            }
            _ => return None,
        }
        n.feasible(spec).then_some(n)
    }

    /// Whether some completion of this prefix is in range.
    fn feasible(&self, spec: &NumSpec) -> bool {
        let Some((lo, hi)) = spec.bounds else {
            return true;
        };
        let s = pow10(spec.sd);
        let meets = |a: i128, b: i128| {
            // magnitude interval [a, b] → signed, then intersect [lo, hi]
            let (x, y) = if self.neg { (-b, -a) } else { (a, b) };
            x <= hi && y >= lo
        };
        match self.ph {
            NumPh::Start => true,
            // Integers after '-' start with 1..9 ("-0" is refused).
            NumPh::Minus => lo <= if spec.integer { -1 } else { 0 },
            NumPh::Zero => meets(0, s - 1),
            NumPh::Int => {
                let p = self.mant;
                let k = u32::from(self.int_digits);
                (0..=spec.max_int.saturating_sub(k)).any(|j| {
                    // j more integer digits, then any fraction (s = 1 for integers)
                    meets(p * pow10(j) * s, (p + 1) * pow10(j) * s - 1)
                })
            }
            NumPh::Dot => meets(self.mant * s, self.mant * s + s - 1),
            NumPh::Frac => {
                let m = u32::from(self.frac_digits);
                if m < spec.sd {
                    let scale = pow10(spec.sd - m);
                    meets(self.mant * scale, (self.mant + 1) * scale - 1)
                } else {
                    meets(self.mant, self.mant)
                }
            }
        }
    }

    /// The shortest text that completes this prefix into a number in range.
    pub fn shortest_completion(&self, spec: &NumSpec) -> Option<Vec<u8>> {
        if self.is_complete(spec) {
            return Some(Vec::new());
        }
        // Breadth first: the first complete state found is a shortest one.
        // Feasibility prunes hard, so the frontier stays small.
        let mut frontier: Vec<(NumState, Vec<u8>)> = vec![(*self, Vec::new())];
        for _depth in 0..(spec.max_int + spec.max_frac + 3) {
            let mut next = Vec::new();
            for (st, text) in &frontier {
                for &b in b"0123456789.-" {
                    if let Some(ns) = st.step(spec, b) {
                        let mut t = text.clone();
                        t.push(b);
                        if ns.is_complete(spec) {
                            return Some(t);
                        }
                        if next.len() < 4096 {
                            next.push((ns, t));
                        }
                    }
                }
            }
            if next.is_empty() {
                return None;
            }
            frontier = next;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(spec: &NumSpec, text: &str) -> Option<NumState> {
        let mut st = NumState::START;
        for &b in text.as_bytes() {
            st = st.step(spec, b)?;
        }
        Some(st)
    }

    fn accepts(spec: &NumSpec, text: &str) -> bool {
        run(spec, text).is_some_and(|s| s.is_complete(spec))
    }

    fn b(value: f64) -> Option<Bound> {
        Some(Bound {
            value,
            exclusive: false,
        })
    }

    #[test]
    fn free_numbers() {
        let int = NumSpec::new(true, None, None).unwrap();
        for t in ["0", "7", "-12", "123456789012345"] {
            assert!(accepts(&int, t), "{t}");
        }
        for t in ["01", "-0", "1.5", "-", "", "1234567890123456", "+1", "1e5"] {
            assert!(!accepts(&int, t), "{t}");
        }
        let num = NumSpec::new(false, None, None).unwrap();
        for t in ["0.5", "-0.25", "3", "10.000"] {
            assert!(accepts(&num, t), "{t}");
        }
        for t in ["1.", ".5", "00.1", "1.2.3"] {
            assert!(!accepts(&num, t), "{t}");
        }
    }

    #[test]
    fn integer_bounds_are_exact() {
        let s = NumSpec::new(true, b(500.0), b(600.0)).unwrap();
        assert!(accepts(&s, "500") && accepts(&s, "600") && accepts(&s, "555"));
        assert!(!accepts(&s, "499") && !accepts(&s, "601") && !accepts(&s, "-500"));
        // Dead ends are refused at the first byte that leads into them.
        assert!(run(&s, "4").is_none());
        assert!(run(&s, "7").is_none());
        assert!(run(&s, "-").is_none());
        assert!(run(&s, "61").is_none());
        assert_eq!(NumState::START.shortest_completion(&s).unwrap(), b"500");
        let st = run(&s, "5").unwrap();
        assert_eq!(st.shortest_completion(&s).unwrap(), b"00");

        let neg = NumSpec::new(true, b(-20.0), b(-10.0)).unwrap();
        assert!(accepts(&neg, "-15") && !accepts(&neg, "15") && !accepts(&neg, "-9"));
        assert_eq!(NumState::START.shortest_completion(&neg).unwrap(), b"-10");

        let excl = NumSpec::new(
            true,
            Some(Bound {
                value: 0.0,
                exclusive: true,
            }),
            b(3.0),
        )
        .unwrap();
        assert!(!accepts(&excl, "0") && accepts(&excl, "1") && accepts(&excl, "3"));
    }

    #[test]
    fn number_bounds_with_fractions() {
        let s = NumSpec::new(false, b(0.0), b(1.0)).unwrap();
        for t in ["0", "1", "0.5", "0.999999", "1.0", "1.000000"] {
            assert!(accepts(&s, t), "{t}");
        }
        for t in ["1.000001", "1.5", "-0.1", "2", "0.1234567"] {
            assert!(!accepts(&s, t), "{t}");
        }
        let narrow = NumSpec::new(false, b(0.25), b(0.26)).unwrap();
        assert!(accepts(&narrow, "0.25") && accepts(&narrow, "0.2555"));
        assert!(!accepts(&narrow, "0.2") && !accepts(&narrow, "0.3"));
        assert_eq!(
            NumState::START.shortest_completion(&narrow).unwrap(),
            b"0.25"
        );
        // 0.1 compares as a float would: 0.1 <= 0.1.
        let tenth = NumSpec::new(false, b(0.1), b(0.1)).unwrap();
        assert!(accepts(&tenth, "0.1") && !accepts(&tenth, "0.11"));
        assert!(NumSpec::new(true, b(0.2), b(0.8)).is_err());
        // No dead end behind '-' when nothing negative is allowed.
        let nat = NumSpec::new(true, b(0.0), b(5.0)).unwrap();
        assert!(NumState::START.step(&nat, b'-').is_none());
        let unit = NumSpec::new(false, b(0.0), b(5.0)).unwrap();
        let minus = NumState::START.step(&unit, b'-').unwrap();
        assert_eq!(minus.shortest_completion(&unit).unwrap(), b"0");
    }
}
