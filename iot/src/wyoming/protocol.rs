//! Wyoming framing: JSON lines with optional binary data and payload.
//!
//! An event on the wire (as the `wyoming` Python package reads and writes it):
//!
//! ```text
//! {"type": "transcript", "version": "1.10.2", "data_length": 27}\n   header: one JSON object, one line
//! {"text": "turn on the light"}                                    data_length bytes: JSON object, merged into header "data"
//! <payload_length bytes>                                           optional binary payload (audio)
//! ```
//!
//! A header may also carry its data inline (`"data": {…}`, older writers);
//! data bytes, when present, are merged over it. Writers here put the data
//! in the data bytes, like the Python package does.

use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The protocol version written in headers: the `wyoming` package version
/// this implementation follows and is tested against.
pub const WYOMING_VERSION: &str = "1.10.2";
/// Longest header line accepted.
pub const MAX_HEADER: usize = 64 << 10;
/// Largest data block accepted.
pub const MAX_DATA: usize = 1 << 20;
/// Largest payload accepted (audio chunks are a few KiB).
pub const MAX_PAYLOAD: usize = 16 << 20;

/// One Wyoming event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WyEvent {
    /// `describe`, `info`, `transcript`, `handled`, …
    pub kind: String,
    /// The event's fields.
    pub data: Map<String, Value>,
    /// Binary payload (audio); `None` if absent or empty.
    pub payload: Option<Vec<u8>>,
}

impl WyEvent {
    /// An event with data.
    pub fn new(kind: &str, data: Map<String, Value>) -> WyEvent {
        WyEvent {
            kind: kind.to_string(),
            data,
            payload: None,
        }
    }

    /// A string field of the data.
    pub fn str_field(&self, key: &str) -> Option<&str> {
        self.data.get(key).and_then(Value::as_str)
    }
}

/// Why an event could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The connection failed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The header line is not a JSON object with a string `type`.
    #[error("bad event header: {0}")]
    BadHeader(String),
    /// The data block is not a JSON object.
    #[error("bad event data of a {kind} event: {detail}")]
    BadData {
        /// The event type.
        kind: String,
        /// Why.
        detail: String,
    },
    /// A size over the limits (or cut short by the end of the stream).
    #[error("{0}")]
    TooLarge(String),
    /// The stream ended inside an event.
    #[error("the connection closed in the middle of a {0} event")]
    Truncated(String),
}

/// Reads one event; `Ok(None)` at a clean end of stream.
pub async fn read_event<R: AsyncBufRead + Unpin>(
    r: &mut R,
) -> Result<Option<WyEvent>, ProtocolError> {
    let mut line = Vec::new();
    let n = (&mut *r)
        .take(MAX_HEADER as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        if line.len() > MAX_HEADER {
            return Err(ProtocolError::TooLarge(format!(
                "event header longer than {MAX_HEADER} bytes"
            )));
        }
        // Trailing bytes without a newline at the end of the stream.
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
    }
    let header: Value =
        serde_json::from_slice(&line).map_err(|e| ProtocolError::BadHeader(e.to_string()))?;
    let Value::Object(mut header) = header else {
        return Err(ProtocolError::BadHeader("not a JSON object".into()));
    };
    let kind = match header.remove("type") {
        Some(Value::String(s)) => s,
        _ => return Err(ProtocolError::BadHeader("no string \"type\"".into())),
    };
    let mut data = match header.remove("data") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(ProtocolError::BadData {
                kind,
                detail: "inline \"data\" is not an object".into(),
            })
        }
    };
    let data_len = length(&header, "data_length", MAX_DATA, &kind)?;
    if data_len > 0 {
        let mut bytes = vec![0u8; data_len];
        read_exact(r, &mut bytes, &kind).await?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => data.extend(m),
            Ok(_) => {
                return Err(ProtocolError::BadData {
                    kind,
                    detail: "not a JSON object".into(),
                })
            }
            Err(e) => {
                return Err(ProtocolError::BadData {
                    kind,
                    detail: e.to_string(),
                })
            }
        }
    }
    let payload_len = length(&header, "payload_length", MAX_PAYLOAD, &kind)?;
    let payload = if payload_len > 0 {
        let mut bytes = vec![0u8; payload_len];
        read_exact(r, &mut bytes, &kind).await?;
        Some(bytes)
    } else {
        None
    };
    Ok(Some(WyEvent {
        kind,
        data,
        payload,
    }))
}

fn length(
    header: &Map<String, Value>,
    key: &str,
    max: usize,
    kind: &str,
) -> Result<usize, ProtocolError> {
    match header.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => {
            let n = v.as_u64().ok_or_else(|| {
                ProtocolError::BadHeader(format!(
                    "{key} of a {kind} event is not a whole number: {v}"
                ))
            })?;
            match usize::try_from(n) {
                Ok(n) if n <= max => Ok(n),
                _ => Err(ProtocolError::TooLarge(format!(
                    "{key} {n} of a {kind} event is over the limit of {max} bytes"
                ))),
            }
        }
    }
}

async fn read_exact<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    kind: &str,
) -> Result<(), ProtocolError> {
    match r.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(ProtocolError::Truncated(kind.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

/// The bytes of one event, as the Python package writes them: the header
/// (`type`, `version`, `data_length`, `payload_length`, with Python's `", "`
/// and `": "` separators) and a newline, the data as JSON, the payload.
pub fn encode_event(ev: &WyEvent) -> Vec<u8> {
    let data = if ev.data.is_empty() {
        Vec::new()
    } else {
        // Serializing a map of JSON values cannot fail.
        serde_json::to_vec(&ev.data).unwrap_or_default()
    };
    let payload = ev.payload.as_deref().unwrap_or(&[]);
    let mut out = format!(
        "{{\"type\": {}, \"version\": \"{WYOMING_VERSION}\"",
        Value::from(ev.kind.as_str())
    );
    if !data.is_empty() {
        out.push_str(&format!(", \"data_length\": {}", data.len()));
    }
    if !payload.is_empty() {
        out.push_str(&format!(", \"payload_length\": {}", payload.len()));
    }
    out.push_str("}\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&data);
    bytes.extend_from_slice(payload);
    bytes
}

/// Writes one event and flushes.
pub async fn write_event<W: AsyncWrite + Unpin>(w: &mut W, ev: &WyEvent) -> std::io::Result<()> {
    w.write_all(&encode_event(ev)).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    async fn read_all(bytes: &[u8]) -> Vec<Result<Option<WyEvent>, String>> {
        let mut r = tokio::io::BufReader::new(bytes);
        let mut out = Vec::new();
        loop {
            let ev = read_event(&mut r).await.map_err(|e| e.to_string());
            let end = !matches!(ev, Ok(Some(_)));
            out.push(ev);
            if end {
                return out;
            }
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn round_trip_with_data_and_payload() {
        let ev = WyEvent {
            kind: "audio-chunk".into(),
            data: obj(json!({"rate": 16000, "width": 2, "channels": 1, "text": "héllo"})),
            payload: Some(vec![0, 1, 2, 255]),
        };
        let bytes = encode_event(&ev);
        let header_end = bytes.iter().position(|&b| b == b'\n').unwrap();
        let header = std::str::from_utf8(&bytes[..header_end]).unwrap();
        assert!(
            header.starts_with("{\"type\": \"audio-chunk\", \"version\": \""),
            "{header}"
        );
        assert!(header.contains("\"payload_length\": 4"), "{header}");
        let got = rt().block_on(read_all(&bytes));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap().as_ref().unwrap(), &ev);
        assert!(matches!(got[1], Ok(None)));
    }

    #[test]
    fn inline_data_merged_with_data_bytes_and_python_bytes() {
        // What the Python package writes for Transcript("hi", language="en").
        let data = br#"{"text": "hi", "language": "en"}"#;
        let mut bytes = format!(
            "{{\"type\": \"transcript\", \"version\": \"1.10.2\", \"data_length\": {}}}\n",
            data.len()
        )
        .into_bytes();
        bytes.extend_from_slice(data);
        // An old-style event with inline data, plus data bytes overriding a key.
        let more = br#"{"a": 2}"#;
        bytes.extend_from_slice(
            format!(
                "{{\"type\": \"x\", \"data\": {{\"a\": 1, \"b\": 1}}, \"data_length\": {}}}\n",
                more.len()
            )
            .as_bytes(),
        );
        bytes.extend_from_slice(more);
        bytes.extend_from_slice(b"{\"type\": \"describe\"}\n");
        let got = rt().block_on(read_all(&bytes));
        let evs: Vec<WyEvent> = got.into_iter().filter_map(|r| r.unwrap()).collect();
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].str_field("text"), Some("hi"));
        assert_eq!(evs[0].str_field("language"), Some("en"));
        assert_eq!(Value::Object(evs[1].data.clone()), json!({"a": 2, "b": 1}));
        assert_eq!(evs[2].kind, "describe");
        assert!(evs[2].data.is_empty());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json\n", "bad event header"),
            (b"[1,2]\n", "not a JSON object"),
            (b"{\"data\": {}}\n", "no string \"type\""),
            (
                b"{\"type\": \"x\", \"data_length\": -1}\n",
                "not a whole number",
            ),
            (
                b"{\"type\": \"x\", \"data_length\": 99999999999}\n",
                "over the limit",
            ),
            (
                b"{\"type\": \"x\", \"data_length\": 10}\n{\"a\"",
                "in the middle of a x event",
            ),
            (
                b"{\"type\": \"x\", \"data_length\": 3}\n[1]",
                "not a JSON object",
            ),
            (
                b"{\"type\": \"x\", \"payload_length\": 5}\nab",
                "in the middle",
            ),
        ];
        for (bytes, needle) in cases {
            let got = rt().block_on(read_all(bytes));
            let err = got.last().unwrap().as_ref().expect_err("an error");
            assert!(
                err.contains(needle),
                "{:?}: {err}",
                String::from_utf8_lossy(bytes)
            );
        }
        let long = vec![b'x'; MAX_HEADER + 10];
        let got = rt().block_on(read_all(&long));
        assert!(got[0].as_ref().unwrap_err().contains("longer than"));
        // Trailing whitespace at the end is a clean end.
        let got = rt().block_on(read_all(b"{\"type\": \"ping\"}\n  "));
        assert!(matches!(got.last().unwrap(), Ok(None)));
    }
}
