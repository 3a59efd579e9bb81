//! A minimal HTTP/1.1 server side: reading one request from a byte stream (request line,
//! case-insensitive headers, `Content-Length` or chunked bodies, percent-decoded path,
//! query string) and writing one response (always with `Content-Length`, and with
//! `Content-Type` unless the response has none). Knows nothing about UFM; transport (TCP or TLS) is the caller's.

use std::io::{self, BufRead, Write};

/// Apache's default `LimitRequestLine`: longer request lines get a 414.
pub const REQUEST_LINE_LIMIT: usize = 8190;
/// Longer request lines are not even read; the connection gets a 414 and is closed.
const REQUEST_LINE_HARD_LIMIT: usize = 1 << 20;
/// Apache's default `LimitRequestFieldSize`.
const HEADER_LINE_LIMIT: usize = 8190;
/// Apache's default `LimitRequestFields`.
const HEADER_COUNT_LIMIT: usize = 100;
/// Largest accepted request body.
const BODY_LIMIT: usize = 16 << 20;

/// A parsed request.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    /// The request target as sent.
    pub target: String,
    /// The percent-decoded path.
    pub path: String,
    /// Decoded query parameters in order (`+` is a space).
    pub query: Vec<(String, String)>,
    /// True for HTTP/1.0.
    pub http10: bool,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Length of the request line without its CRLF.
    pub line_len: usize,
    /// Which connection it came on (set by the server; 0 when unknown).
    pub conn: u64,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_connection_token(&self, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == "connection")
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the connection may carry another request after this one.
    pub fn keep_alive(&self) -> bool {
        if self.http10 {
            self.has_connection_token("keep-alive")
        } else {
            !self.has_connection_token("close")
        }
    }
}

/// Why no request could be read; the connection is closed after the matching response.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection cleanly between requests.
    Closed,
    /// I/O error, timeout or TLS failure: nothing more can be said to the peer.
    Io(io::Error),
    /// Malformed request: answer 400.
    Malformed(String),
    /// Request line over [`REQUEST_LINE_HARD_LIMIT`]: answer 414.
    LineTooLong,
    /// Body over [`BODY_LIMIT`]: answer 413.
    BodyTooLarge,
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

enum Line {
    Eof,
    Full(Vec<u8>),
    TooLong,
}

/// Reads one line (without CRLF or LF), at most `limit` bytes.
fn read_line(reader: &mut impl BufRead, limit: usize) -> io::Result<Line> {
    let mut line = Vec::new();
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return if line.is_empty() {
                Ok(Line::Eof)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if line.len() + chunk.len() > limit + 1 {
            return Ok(Line::TooLong);
        }
        line.extend_from_slice(chunk);
        let used = done.unwrap_or(chunk.len());
        reader.consume(used);
        if done.is_some() {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(if line.len() > limit {
                Line::TooLong
            } else {
                Line::Full(line)
            });
        }
    }
}

fn malformed(msg: &str) -> ReadError {
    ReadError::Malformed(msg.to_string())
}

/// Reads the next request. `on_continue` is called (to send `100 Continue`) before the
/// body is read when the client asked for it.
pub fn read_request<R: BufRead>(
    reader: &mut R,
    mut on_continue: impl FnMut(&mut R) -> io::Result<()>,
) -> Result<Request, ReadError> {
    // Skip empty lines before the request line (RFC 9112 §2.2).
    let line = loop {
        match read_line(reader, REQUEST_LINE_HARD_LIMIT)? {
            Line::Eof => return Err(ReadError::Closed),
            Line::TooLong => return Err(ReadError::LineTooLong),
            Line::Full(l) if l.is_empty() => continue,
            Line::Full(l) => break l,
        }
    };
    let line_len = line.len();
    let line = String::from_utf8(line).map_err(|_| malformed("request line is not UTF-8"))?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("malformed request line"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(malformed("malformed method"));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(malformed("unsupported HTTP version")),
    };

    let mut headers = Vec::new();
    loop {
        let line = match read_line(reader, HEADER_LINE_LIMIT)? {
            Line::Eof => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Line::TooLong => return Err(malformed("header line too long")),
            Line::Full(l) => l,
        };
        if line.is_empty() {
            break;
        }
        if headers.len() >= HEADER_COUNT_LIMIT {
            return Err(malformed("too many headers"));
        }
        let line = String::from_utf8(line).map_err(|_| malformed("header is not UTF-8"))?;
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| malformed("header without ':'"))?;
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(malformed("malformed header name"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }

    let (raw_path, raw_query) = split_target(target);
    let path = percent_decode(raw_path, false).ok_or_else(|| malformed("bad percent-encoding"))?;
    let query = parse_query(raw_query).ok_or_else(|| malformed("bad query string"))?;

    let mut request = Request {
        method: method.to_string(),
        target: target.to_string(),
        path,
        query,
        http10,
        headers,
        body: Vec::new(),
        line_len,
        conn: 0,
    };

    let chunked = request
        .header("transfer-encoding")
        .map(|te| {
            te.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("chunked"))
        })
        .unwrap_or(false);
    let length = match request.header("content-length") {
        Some(v) if !chunked => Some(
            v.parse::<usize>()
                .map_err(|_| malformed("bad Content-Length"))?,
        ),
        _ => None,
    };
    if length.is_some_and(|n| n > BODY_LIMIT) {
        return Err(ReadError::BodyTooLarge);
    }
    let has_body = chunked || length.is_some_and(|n| n > 0);
    if has_body
        && !http10
        && request
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        on_continue(reader)?;
    }
    if chunked {
        request.body = read_chunked(reader)?;
    } else if let Some(n) = length {
        let mut body = vec![0; n];
        reader.read_exact(&mut body)?;
        request.body = body;
    }
    Ok(request)
}

fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let line = match read_line(reader, HEADER_LINE_LIMIT)? {
            Line::Full(l) => l,
            Line::Eof => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Line::TooLong => return Err(malformed("chunk size line too long")),
        };
        let line = String::from_utf8(line).map_err(|_| malformed("bad chunk size"))?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| malformed("bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                match read_line(reader, HEADER_LINE_LIMIT)? {
                    Line::Full(l) if l.is_empty() => return Ok(body),
                    Line::Full(_) => continue,
                    Line::Eof => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
                    Line::TooLong => return Err(malformed("trailer too long")),
                }
            }
        }
        if body.len() + size > BODY_LIMIT {
            return Err(ReadError::BodyTooLarge);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        match read_line(reader, 0)? {
            Line::Full(l) if l.is_empty() => {}
            _ => return Err(malformed("chunk not followed by CRLF")),
        }
    }
}

/// Splits a request target into path and query; absolute-form targets lose their
/// scheme and authority.
fn split_target(target: &str) -> (&str, &str) {
    let mut rest = target;
    for scheme in ["http://", "https://"] {
        if let Some(after) = rest.strip_prefix(scheme) {
            rest = after.find('/').map_or("/", |i| &after[i..]);
        }
    }
    let rest = rest.split('#').next().unwrap_or("");
    rest.split_once('?').unwrap_or((rest, ""))
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`). `None` if an escape
/// is malformed or the result is not UTF-8.
pub fn percent_decode(text: &str, plus_is_space: bool) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn parse_query(raw: &str) -> Option<Vec<(String, String)>> {
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(name, true)?, percent_decode(value, true)?))
        })
        .collect()
}

/// A response to write.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// Close the connection after this response.
    pub close: bool,
    /// Write nothing: drop the connection instead of answering (an injected fault).
    pub abort: bool,
}

pub const JSON: &str = "application/json";
pub const HTML: &str = "text/html; charset=iso-8859-1";
pub const TEXT: &str = "text/plain; charset=utf-8";
/// No `Content-Type` header at all (axum's bare 404 and 405).
pub const NONE: &str = "";

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
            close: false,
            abort: false,
        }
    }

    /// No answer at all: the connection is dropped.
    pub fn dropped() -> Self {
        Self {
            abort: true,
            ..Self::new(0, NONE, "")
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::new(status, JSON, value.to_string())
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }
}

/// The standard reason phrase (Apache's wording where it differs).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Proxy Error",
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Writes `response` (a HEAD request gets the headers only) and flushes.
pub fn write_response(
    out: &mut impl Write,
    response: &Response,
    head_only: bool,
    keep_alive: bool,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nServer: Apache\r\n",
        response.status,
        reason(response.status),
    );
    if !response.content_type.is_empty() {
        head.push_str(&format!("Content-Type: {}\r\n", response.content_type));
    }
    head.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    let mut bytes = head.into_bytes();
    if !head_only {
        bytes.extend_from_slice(&response.body);
    }
    out.write_all(&bytes)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn parse(raw: &[u8]) -> Result<Request, ReadError> {
        read_request(&mut Cursor::new(raw.to_vec()), |_| Ok(()))
    }

    #[test]
    fn parses_request_with_body_and_query() {
        let raw = b"POST /ufmRest/resources/pkeys%2F?guids_data=true&x=a+b HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nCONNECTION: close\r\n\r\nbody";
        let req = parse(raw).unwrap_or_default();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/ufmRest/resources/pkeys/");
        assert_eq!(req.query_param("guids_data"), Some("true"));
        assert_eq!(req.query_param("x"), Some("a b"));
        assert_eq!(req.body, b"body");
        assert!(!req.keep_alive());
    }

    #[test]
    fn parses_chunked_body_and_pipelining() {
        let raw = b"PUT /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\nGET /b HTTP/1.0\r\n\r\n";
        let mut cursor = Cursor::new(raw.to_vec());
        let first = read_request(&mut cursor, |_| Ok(())).unwrap_or_default();
        assert_eq!(first.body, b"abcde");
        assert!(first.keep_alive());
        let second = read_request(&mut cursor, |_| Ok(())).unwrap_or_default();
        assert_eq!(second.path, "/b");
        assert!(!second.keep_alive());
        assert!(matches!(
            read_request(&mut cursor, |_| Ok(())),
            Err(ReadError::Closed)
        ));
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            parse(b"\x16\x03\x01garbage\r\n\r\n"),
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"GET /%zz HTTP/1.1\r\n\r\n"),
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Err(ReadError::Malformed(_))
        ));
    }

    #[test]
    fn measures_long_request_lines() {
        let raw = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
        let req = parse(raw.as_bytes()).unwrap_or_default();
        assert!(req.line_len > REQUEST_LINE_LIMIT);
    }
}
