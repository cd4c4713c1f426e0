//! The Jinja environment chat templates run in: minijinja configured like
//! Hugging Face transformers' `apply_chat_template` (and llama-cpp-python's
//! `Jinja2ChatFormatter`): `trim_blocks`, `lstrip_blocks`, loop controls,
//! Python string/dict methods (minijinja-contrib `pycompat`),
//! `raise_exception`, `strftime_now`, and a `tojson` that writes JSON the way
//! Python's `json.dumps(ensure_ascii=False)` does.

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};

/// A fresh environment with the chat-template globals and filters.
pub(crate) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    env
}

/// `raise_exception(msg)`: templates use it to reject a conversation.
fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

/// `strftime_now(fmt)`: the current date (UTC), formatted like C `strftime`.
fn strftime_now(fmt: String) -> Result<Value, Error> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok(Value::from(strftime_utc(&fmt, secs)))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Formats Unix time `secs` (UTC) with the common `strftime` directives
/// (`%Y %y %m %d %e %B %b %h %A %a %H %I %M %S %p %j %F %T %D %%`); others are
/// copied through.
pub(crate) fn strftime_utc(fmt: &str, secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (h, mi, s) = (sod / 3600, sod / 60 % 60, sod % 60);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy_mar = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy_mar + 2) / 153;
    let d = doy_mar - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let yday = cum[(m - 1) as usize] + d + i64::from(leap && m > 2);
    let wday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let month = MONTHS[(m - 1) as usize];

    let mut out = String::with_capacity(fmt.len() + 16);
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('e') => out.push_str(&format!("{d:2}")),
            Some('B') => out.push_str(month),
            Some('b') | Some('h') => out.push_str(&month[..3]),
            Some('A') => out.push_str(DAYS[wday]),
            Some('a') => out.push_str(&DAYS[wday][..3]),
            Some('H') => out.push_str(&format!("{h:02}")),
            Some('I') => out.push_str(&format!("{:02}", if h % 12 == 0 { 12 } else { h % 12 })),
            Some('M') => out.push_str(&format!("{mi:02}")),
            Some('S') => out.push_str(&format!("{s:02}")),
            Some('p') => out.push_str(if h < 12 { "AM" } else { "PM" }),
            Some('j') => out.push_str(&format!("{yday:03}")),
            Some('F') => out.push_str(&format!("{y}-{m:02}-{d:02}")),
            Some('T') => out.push_str(&format!("{h:02}:{mi:02}:{s:02}")),
            Some('D') => out.push_str(&format!("{m:02}/{d:02}/{:02}", y.rem_euclid(100))),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// `x | tojson(indent=None, ensure_ascii=False, sort_keys=False)`, as
/// transformers defines it: Python's `json.dumps`, so `", "` and `": "`
/// separators, no HTML escaping, keys in insertion order.
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    // `separators` is accepted for compatibility; Python's defaults are used.
    let _: Option<Value> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let opts = JsonOpts {
        indent,
        ensure_ascii: ensure_ascii.unwrap_or(false),
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    write_json(&value, &opts, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

struct JsonOpts {
    indent: Option<usize>,
    ensure_ascii: bool,
    sort_keys: bool,
}

fn write_json(v: &Value, o: &JsonOpts, depth: usize, out: &mut String) -> Result<(), Error> {
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = o.indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * depth));
        }
    };
    let item_sep = if o.indent.is_some() { "," } else { ", " };
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&python_number(v)),
        ValueKind::String | ValueKind::Bytes | ValueKind::Plain | ValueKind::Invalid => {
            write_json_string(&v.to_string(), o.ensure_ascii, out)
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                write_json(item, o, depth + 1, out)?;
            }
            if !items.is_empty() {
                newline(out, depth);
            }
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if o.sort_keys {
                keys.sort();
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                newline(out, depth + 1);
                write_json_string(&k.to_string(), o.ensure_ascii, out);
                out.push_str(": ");
                write_json(&v.get_item(k)?, o, depth + 1, out)?;
            }
            if !keys.is_empty() {
                newline(out, depth);
            }
            out.push('}');
        }
        // Future value kinds: their string form.
        _ => write_json_string(&v.to_string(), o.ensure_ascii, out),
    }
    Ok(())
}

/// Integers as themselves; floats like Python's `repr` (`1.0`, `0.5`).
fn python_number(v: &Value) -> String {
    if let Some(i) = v.as_i64() {
        if !v.to_string().contains(['.', 'e', 'E']) {
            return i.to_string();
        }
    }
    let f: f64 = v.to_string().parse().unwrap_or(f64::NAN);
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else if f == f.trunc() && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

fn write_json_string(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && (c as u32) > 0x7E) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime() {
        // 2025-02-01 13:05:09 UTC was a Saturday.
        let t = 1_738_415_109;
        assert_eq!(strftime_utc("%d %b %Y", t), "01 Feb 2025");
        assert_eq!(
            strftime_utc("%A %B %e, %H:%M:%S %p %j %%", t),
            "Saturday February  1, 13:05:09 PM 032 %"
        );
        assert_eq!(strftime_utc("%F %T", 0), "1970-01-01 00:00:00");
        assert_eq!(strftime_utc("%F", 951_782_400), "2000-02-29");
    }

    #[test]
    fn tojson_like_python() {
        let env = environment();
        let r = |src: &str, ctx: Value| env.render_str(src, ctx).unwrap();
        let ctx = minijinja::context! { x => minijinja::context!{ b => 1, a => vec!["é", "<q>"], c => 0.5, d => () } };
        assert_eq!(
            r("{{ x | tojson }}", ctx.clone()),
            r#"{"b": 1, "a": ["é", "<q>"], "c": 0.5, "d": null}"#
        );
        assert_eq!(
            r("{{ x.a | tojson(indent=2) }}", ctx.clone()),
            "[\n  \"é\",\n  \"<q>\"\n]"
        );
        assert_eq!(
            r("{{ x.a | tojson(ensure_ascii=true) }}", ctx),
            r#"["\u00e9", "<q>"]"#
        );
    }

    #[test]
    fn python_methods_and_exceptions() {
        let env = environment();
        let out = env
            .render_str(
                "{{ ' a b '.strip().split(' ')[-1] }}{{ 'xy'.startswith('x') }}",
                minijinja::context! {},
            )
            .unwrap();
        assert_eq!(out, "bTrue");
        let err = env
            .render_str("{{ raise_exception('bad roles') }}", minijinja::context! {})
            .unwrap_err();
        assert!(err.to_string().contains("bad roles"));
    }
}
