//! The control socket: a Unix stream socket on which `esprit status`, `initiate`,
//! `terminate`, `rekey` and `reload` send one JSON request line and read one JSON
//! response line.
//!
//! Only root (or the user the daemon runs as) may command the daemon, checked twice:
//! the socket file is mode 0600, so the kernel refuses anyone else's `connect`; and the
//! daemon reads the caller's credentials (`SO_PEERCRED`) on every connection and answers
//! any other user with an error. The second check covers what the file mode cannot: the
//! moment between `bind` and `chmod`, and a mode loosened by hand afterwards.
//!
//! A request that is not one JSON line (not UTF-8, longer than 64 KiB, not a known
//! command, or not finished within 5 s) gets an error answer; the daemon goes on.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::status::Status;

/// A request to the daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    /// SAs and counters.
    Status,
    /// Counters and the number of SAs by state, without listing them: cheap at any
    /// number of SAs.
    Summary,
    /// Start a connection (all its children, or one).
    Initiate {
        /// Connection name.
        conn: String,
        /// Child name; all children when absent.
        child: Option<String>,
    },
    /// Delete a connection's IKE SAs at the peer.
    Terminate {
        /// Connection name.
        conn: String,
    },
    /// Read the configuration file again and apply it.
    Reload,
    /// Rekey a connection's child SAs (all, or one child), or its IKE SA, make-before-break.
    Rekey {
        /// Connection name.
        conn: String,
        /// Only the child SAs of this child.
        #[serde(default)]
        child: Option<String>,
        /// The IKE SA instead of child SAs.
        #[serde(default)]
        ike: bool,
    },
}

/// The daemon's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Response {
    /// The status report.
    Status(Box<Status>),
    /// The command was accepted.
    Ok {
        /// What the daemon did.
        message: String,
    },
    /// The command was refused.
    Error {
        /// Why.
        message: String,
    },
}

/// Largest request line the daemon reads.
const MAX_REQUEST: usize = 64 * 1024;
/// How long a caller has to send its request line.
const REQUEST_WAIT: Duration = Duration::from_secs(5);

/// Reads one request line as the daemon does: any text gives a request or an error.
pub fn parse_request(line: &str) -> Result<Request, serde_json::Error> {
    serde_json::from_str(line)
}

/// Sends `req` to the daemon listening on `path` and waits for its answer.
pub fn request(path: &Path, req: &Request, timeout: Duration) -> io::Result<Response> {
    let mut sock = UnixStream::connect(path).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::PermissionDenied {
            "only root may command esprit"
        } else {
            "is `esprit run` going?"
        };
        io::Error::new(
            e.kind(),
            format!(
                "cannot reach the esprit daemon at {}: {e} ({hint})",
                path.display()
            ),
        )
    })?;
    sock.set_read_timeout(Some(timeout))?;
    sock.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    // A daemon that refuses the caller answers at once and closes, so the write may
    // fail (EPIPE) with its answer already waiting: read that before giving up.
    let wrote = sock.write_all(&line);
    let mut answer = String::new();
    let read = BufReader::new(sock).read_line(&mut answer);
    if answer.is_empty() {
        wrote?;
        read?;
    }
    serde_json::from_str(&answer)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad answer: {e}")))
}

/// The daemon's answer as it travels to the connection's task: whole, or (the status
/// report, megabytes at 100,000 SAs) as the pieces of one JSON line, written to the
/// socket as they come so neither side holds the whole text.
pub(crate) enum Answer {
    /// One response, serialized by the connection's task.
    Whole(Response),
    /// The bytes of one response line (newline included), in order; the line ends
    /// early (invalid JSON for the caller) if the daemon gives up on a slow reader.
    Stream(mpsc::Receiver<Vec<u8>>),
}

impl From<Response> for Answer {
    fn from(r: Response) -> Answer {
        Answer::Whole(r)
    }
}

/// A request with the channel its answer goes back on.
pub(crate) type Pending = (Request, oneshot::Sender<Answer>);

/// The listening socket; removes its file when dropped.
pub(crate) struct ControlSocket {
    path: PathBuf,
}

impl ControlSocket {
    /// Binds `path` (replacing a stale socket file) and serves connections on the current
    /// tokio runtime, passing each request to `tx`.
    pub(crate) fn bind(path: &Path, tx: mpsc::Sender<Pending>) -> io::Result<ControlSocket> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("another daemon answers on {}", path.display()),
            ));
        }
        let _ = std::fs::remove_file(path);
        let listener = tokio::net::UnixListener::bind(path)?;
        // Only the owner (root) may command the daemon.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let tx = tx.clone();
                tokio::spawn(serve(stream, tx));
            }
        });
        Ok(ControlSocket {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a caller with user ID `uid` may command the daemon: root, or the user the
/// daemon itself runs as (a daemon started unprivileged with capabilities).
fn caller_allowed(uid: u32) -> bool {
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    uid == 0 || uid == unsafe { libc::geteuid() }
}

/// Reads one request line: the request, or the error to answer.
async fn read_request(rd: impl tokio::io::AsyncRead + Unpin) -> Result<Request, String> {
    let mut rd = tokio::io::BufReader::new(rd).take(MAX_REQUEST as u64 + 1);
    let mut line = Vec::new();
    match tokio::time::timeout(REQUEST_WAIT, rd.read_until(b'\n', &mut line)).await {
        Err(_) => return Err(format!("no request line within {REQUEST_WAIT:?}")),
        Ok(Err(e)) => return Err(format!("reading the request: {e}")),
        Ok(Ok(_)) => {}
    }
    if line.len() > MAX_REQUEST {
        return Err(format!("request longer than {MAX_REQUEST} bytes"));
    }
    let text = std::str::from_utf8(&line).map_err(|_| "request is not UTF-8".to_string())?;
    parse_request(text).map_err(|e| format!("bad request: {e}"))
}

async fn serve(stream: tokio::net::UnixStream, tx: mpsc::Sender<Pending>) {
    let cred = stream.peer_cred();
    let (rd, mut wr) = stream.into_split();
    let response = match cred {
        Ok(c) if caller_allowed(c.uid()) => match read_request(rd).await {
            Ok(req) => {
                let (reply, answer) = oneshot::channel();
                if tx.send((req, reply)).await.is_err() {
                    return;
                }
                match answer.await {
                    Ok(Answer::Whole(r)) => r,
                    Ok(Answer::Stream(mut pieces)) => {
                        while let Some(piece) = pieces.recv().await {
                            if wr.write_all(&piece).await.is_err() {
                                return;
                            }
                        }
                        return;
                    }
                    Err(_) => return,
                }
            }
            Err(message) => Response::Error { message },
        },
        Ok(c) => {
            tracing::warn!("control socket: refused a caller with uid {}", c.uid());
            Response::Error {
                message: format!(
                    "permission denied: uid {} may not command esprit (only root)",
                    c.uid()
                ),
            }
        }
        Err(e) => Response::Error {
            message: format!("permission denied: caller's credentials unreadable: {e}"),
        },
    };
    if let Ok(mut out) = serde_json::to_vec(&response) {
        out.push(b'\n');
        let _ = wr.write_all(&out).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_line() {
        let r = Request::Initiate {
            conn: "site-b".into(),
            child: None,
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(s, r#"{"cmd":"initiate","conn":"site-b","child":null}"#);
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r);
        let s = serde_json::to_string(&Response::Ok {
            message: "x".into(),
        })
        .unwrap();
        assert_eq!(s, r#"{"result":"ok","message":"x"}"#);
    }

    #[test]
    fn rekey_and_reload_requests() {
        let r = Request::Rekey {
            conn: "site-b".into(),
            child: Some("net".into()),
            ike: false,
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(
            s,
            r#"{"cmd":"rekey","conn":"site-b","child":"net","ike":false}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r);
        // child and ike may be left out.
        let short: Request = serde_json::from_str(r#"{"cmd":"rekey","conn":"x"}"#).unwrap();
        assert_eq!(
            short,
            Request::Rekey {
                conn: "x".into(),
                child: None,
                ike: false
            }
        );
        assert_eq!(
            serde_json::to_string(&Request::Reload).unwrap(),
            r#"{"cmd":"reload"}"#
        );
    }
}
