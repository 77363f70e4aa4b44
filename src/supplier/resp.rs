//! A minimal blocking Redis client (RESP2 over TCP) for the hand-off thread: connect with
//! `AUTH`/`SELECT` from a `redis://` URL, send pipelined commands, read typed replies with bounded
//! sizes. It is all the hand-off needs (one `EVAL` per mined relay, shannon-relay.md §5), in a
//! few hundred lines instead of a client crate, and it runs only on the hand-off's own thread.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest bulk string or array accepted in a reply (a stream id or a short error in practice).
const MAX_REPLY_BYTES: usize = 16 << 20;
const MAX_ARRAY_LEN: usize = 1 << 16;
const MAX_DEPTH: usize = 8;

/// Where the hand-off connects: parsed from `redis://[user][:password@]host:port[/db]`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisTarget {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(f, "redis://{}:{}/{}", self.host, self.port, self.db)
    }
}

impl RedisTarget {
    pub fn parse(url: &str) -> Result<RedisTarget, String> {
        let rest = url.strip_prefix("redis://").ok_or("expected a redis:// URL (rediss:// is not supported: tunnel a remote Redis)")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => ((!user.is_empty()).then(|| user.to_string()), Some(pass.to_string())),
                None => (Some(u.to_string()), None),
            },
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse::<u16>().map_err(|_| "the port is not a number from 1 to 65535")?),
            _ => (hostport, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err("expected a host and port, such as redis://127.0.0.1:6379".into());
        }
        let db = if path.is_empty() { 0 } else { path.parse::<u32>().map_err(|_| "the path must be a database number such as /0")? };
        Ok(RedisTarget { host: host.to_string(), port, username, password, db })
    }

    /// The password, for the redaction list.
    pub fn secret(&self) -> Option<&str> {
        self.password.as_deref()
    }
}

/// A reply as RESP2 types it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// What went wrong talking to Redis. `Io` and `Protocol` end the connection (reconnect);
/// `Server` is one command's error reply (the connection stays good).
#[derive(Debug)]
pub enum RedisError {
    Io(std::io::Error),
    Protocol(String),
    Server(String),
}

impl std::fmt::Display for RedisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisError::Io(e) => write!(f, "connection: {e}"),
            RedisError::Protocol(m) => write!(f, "protocol: {m}"),
            RedisError::Server(m) => write!(f, "redis error reply: {m}"),
        }
    }
}

impl From<std::io::Error> for RedisError {
    fn from(e: std::io::Error) -> RedisError {
        RedisError::Io(e)
    }
}

pub struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    /// Connect (each resolved address in turn), then `AUTH` and `SELECT` as the URL says. Every
    /// read and write is bounded by `timeout`.
    pub fn connect(target: &RedisTarget, timeout: Duration) -> Result<Connection, RedisError> {
        let mut last = None;
        for addr in (target.host.as_str(), target.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(timeout))?;
                    stream.set_write_timeout(Some(timeout))?;
                    let _ = stream.set_nodelay(true);
                    let mut conn = Connection { reader: BufReader::new(stream.try_clone()?), writer: stream };
                    if let Some(password) = &target.password {
                        let mut auth: Vec<&[u8]> = vec![b"AUTH"];
                        if let Some(user) = &target.username {
                            auth.push(user.as_bytes());
                        }
                        auth.push(password.as_bytes());
                        conn.command(&auth)?.ok()?;
                    }
                    if target.db != 0 {
                        conn.command(&[b"SELECT", target.db.to_string().as_bytes()])?.ok()?;
                    }
                    return Ok(conn);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(RedisError::Io(last.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{} resolves to no address", target.host)))))
    }

    /// One command, one reply (an error reply is `Ok(Reply::Error)`: see [`Reply::ok`]).
    pub fn command(&mut self, args: &[&[u8]]) -> Result<Reply, RedisError> {
        let mut replies = self.pipeline(&[args.iter().map(|a| a.to_vec()).collect()])?;
        Ok(replies.remove(0))
    }

    /// Send every command in one write, then read one reply per command, in order.
    pub fn pipeline(&mut self, commands: &[Vec<Vec<u8>>]) -> Result<Vec<Reply>, RedisError> {
        let mut out = Vec::with_capacity(commands.iter().map(|c| c.iter().map(|a| a.len() + 16).sum::<usize>() + 16).sum());
        for args in commands {
            encode_command(&mut out, args);
        }
        self.writer.write_all(&out)?;
        self.writer.flush()?;
        commands.iter().map(|_| read_reply(&mut self.reader, 0)).collect()
    }
}

impl Reply {
    /// The reply, or its error text as [`RedisError::Server`].
    pub fn ok(self) -> Result<Reply, RedisError> {
        match self {
            Reply::Error(m) => Err(RedisError::Server(m)),
            other => Ok(other),
        }
    }
}

/// A command as a RESP array of bulk strings.
pub fn encode_command(out: &mut Vec<u8>, args: &[Vec<u8>]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn read_line(r: &mut impl BufRead) -> Result<String, RedisError> {
    let mut line = Vec::new();
    // A header line is short; a bound keeps a hostile peer from growing it.
    r.take(64 * 1024).read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(RedisError::Io(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "redis closed the connection")));
    }
    if !line.ends_with(b"\r\n") {
        return Err(RedisError::Protocol("reply line without CRLF".into()));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| RedisError::Protocol("reply line is not UTF-8".into()))
}

fn length(text: &str, max: usize) -> Result<Option<usize>, RedisError> {
    let n: i64 = text.parse().map_err(|_| RedisError::Protocol(format!("bad length {text:?}")))?;
    match n {
        -1 => Ok(None),
        n if n >= 0 && (n as u64) <= max as u64 => Ok(Some(n as usize)),
        _ => Err(RedisError::Protocol(format!("length {n} out of bounds"))),
    }
}

pub fn read_reply(r: &mut impl BufRead, depth: usize) -> Result<Reply, RedisError> {
    if depth > MAX_DEPTH {
        return Err(RedisError::Protocol("reply nested too deep".into()));
    }
    let line = read_line(r)?;
    let (kind, rest) = line.split_at(line.len().min(1));
    match kind {
        "+" => Ok(Reply::Status(rest.to_string())),
        "-" => Ok(Reply::Error(rest.to_string())),
        ":" => rest.parse().map(Reply::Integer).map_err(|_| RedisError::Protocol(format!("bad integer {rest:?}"))),
        "$" => match length(rest, MAX_REPLY_BYTES)? {
            None => Ok(Reply::Bulk(None)),
            Some(n) => {
                let mut buf = vec![0; n + 2];
                r.read_exact(&mut buf)?;
                if &buf[n..] != b"\r\n" {
                    return Err(RedisError::Protocol("bulk string without CRLF".into()));
                }
                buf.truncate(n);
                Ok(Reply::Bulk(Some(buf)))
            }
        },
        "*" => match length(rest, MAX_ARRAY_LEN)? {
            None => Ok(Reply::Array(None)),
            Some(n) => (0..n).map(|_| read_reply(r, depth + 1)).collect::<Result<Vec<_>, _>>().map(|v| Reply::Array(Some(v))),
        },
        _ => Err(RedisError::Protocol(format!("unknown reply type {kind:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_password_user_and_db_and_debug_hides_the_password() {
        let t = RedisTarget::parse("redis://:s3cret@10.0.0.2:6380/2").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.password.as_deref(), t.username.as_deref(), t.db), ("10.0.0.2", 6380, Some("s3cret"), None, 2));
        assert!(!format!("{t:?}").contains("s3cret"));
        let t = RedisTarget::parse("redis://miner:pw@redis.example").unwrap();
        assert_eq!((t.port, t.username.as_deref(), t.password.as_deref()), (6379, Some("miner"), Some("pw")));
        let t = RedisTarget::parse("redis://[::1]:7000").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 7000));
        assert!(RedisTarget::parse("http://x:1").is_err());
        assert!(RedisTarget::parse("redis://x:0").is_err());
        assert!(RedisTarget::parse("redis://x:1/a").is_err());
    }

    #[test]
    fn replies_decode_and_bounds_hold() {
        let mut input: &[u8] = b"+OK\r\n-ERR no\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n$1\r\nx\r\n:1\r\n*-1\r\n";
        let got: Vec<Reply> = (0..7).map(|_| read_reply(&mut input, 0).unwrap()).collect();
        assert_eq!(
            got,
            vec![
                Reply::Status("OK".into()),
                Reply::Error("ERR no".into()),
                Reply::Integer(42),
                Reply::Bulk(Some(b"abc".to_vec())),
                Reply::Bulk(None),
                Reply::Array(Some(vec![Reply::Bulk(Some(b"x".to_vec())), Reply::Integer(1)])),
                Reply::Array(None),
            ]
        );
        let mut huge: &[u8] = b"$99999999999\r\n";
        assert!(matches!(read_reply(&mut huge, 0), Err(RedisError::Protocol(_))));
        let mut truncated: &[u8] = b"$5\r\nab";
        assert!(matches!(read_reply(&mut truncated, 0), Err(RedisError::Io(_))));
        let mut deep = Vec::new();
        for _ in 0..20 {
            deep.extend_from_slice(b"*1\r\n");
        }
        assert!(matches!(read_reply(&mut deep.as_slice(), 0), Err(RedisError::Protocol(_))));
    }

    #[test]
    fn commands_encode_as_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"SET".to_vec(), b"k".to_vec(), b"".to_vec()]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }
}
