//! `exec`: runs an allowlisted program, without a shell.
//!
//! The program is started directly with its argv, so `;`, `$(...)`, globs and quotes in
//! arguments reach it literally. The allowlist (`[exec] allow`) is checked when the job
//! is submitted and again when it runs (the configuration may have changed in between).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::{check_string_map, decode, invalid, string, tail, utf8_head};
use crate::config::ExecSection;
use crate::handler::{Handler, HandlerError, HandlerOutput, JobContext, Registry};
use crate::payload::{JsonType, PayloadError, PayloadRules, Schema};

/// Longest command, argument, `cwd` or environment value accepted, in characters.
const MAX_ARG_CHARS: usize = 64 * 1024;
/// Most arguments accepted.
const MAX_ARGS: usize = 1024;
/// Characters of stderr quoted in the error of a failed run.
const STDERR_TAIL_CHARS: usize = 500;
/// Variables of the worker's own environment a program sees. Everything else (the
/// node's database URLs, tokens ...) is withheld: an allowlisted `env` or `printenv`
/// would otherwise hand the node's secrets to whoever may submit jobs.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER"];

pub(super) fn register(r: &mut Registry, config: &ExecSection) {
    let handler = ExecHandler::new(config);
    let checker = handler.clone();
    r.register_checked(
        "exec",
        PayloadRules::with_schema(ExecHandler::schema()),
        move |p: &Value| checker.check(p),
        handler,
    );
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecPayload {
    command: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    stdin: Option<String>,
    cwd: Option<String>,
}

/// The `exec` handler. Output: `{exit_code, stdout, stderr, truncated}`; a non-zero exit
/// is a retryable failure quoting the end of stderr, a missing program a permanent one.
#[derive(Debug, Clone)]
pub struct ExecHandler {
    // Shared so the submit-time check and the handler use one copy of the config.
    config: Arc<ExecSection>,
}

impl ExecHandler {
    /// A handler with this allowlist and output limit.
    pub fn new(config: &ExecSection) -> Self {
        Self {
            config: Arc::new(config.clone()),
        }
    }

    /// The payload schema of `exec`.
    pub fn schema() -> Schema {
        Schema::object(
            &["command"],
            [
                (
                    "command",
                    Schema {
                        min_length: Some(1),
                        ..string(4096)
                    },
                ),
                (
                    "args",
                    Schema {
                        max_items: Some(MAX_ARGS),
                        ..Schema::array_of(string(MAX_ARG_CHARS))
                    },
                ),
                ("env", Schema::of_type(JsonType::Object)),
                ("stdin", Schema::of_type(JsonType::String)),
                ("cwd", string(4096)),
            ],
        )
    }

    /// What the schema cannot say: the command is allowlisted, `env` maps names to
    /// strings, and nothing holds a NUL byte (which no argv can carry).
    pub fn check(&self, payload: &Value) -> Result<(), PayloadError> {
        check_string_map(payload, "env", MAX_ARG_CHARS)?;
        let p: ExecPayload =
            ExecPayload::deserialize(payload).map_err(|e| invalid("payload", e.to_string()))?;
        self.check_payload(&p)
    }

    fn check_payload(&self, p: &ExecPayload) -> Result<(), PayloadError> {
        self.check_command(&p.command)?;
        for (i, a) in p.args.iter().enumerate() {
            no_nul(&format!("payload.args[{i}]"), a)?;
        }
        for (k, v) in &p.env {
            check_env_name(k)?;
            no_nul(&format!("payload.env.{k}"), v)?;
        }
        if let Some(cwd) = &p.cwd {
            no_nul("payload.cwd", cwd)?;
        }
        Ok(())
    }

    fn check_command(&self, command: &str) -> Result<(), PayloadError> {
        let path = "payload.command";
        no_nul(path, command)?;
        // A relative path with a slash would resolve against the job's `cwd`, which the
        // submitter chooses: only bare names (looked up on the node's PATH) and
        // absolute paths name one program for certain.
        if command.contains('/') && !Path::new(command).is_absolute() {
            return Err(invalid(
                path,
                format!("command `{command}` must be a bare program name or an absolute path"),
            ));
        }
        if self.config.allow.iter().any(|a| a == command) {
            return Ok(());
        }
        let allowed = if self.config.allow.is_empty() {
            "none: exec.allow is empty".to_string()
        } else {
            self.config.allow.join(", ")
        };
        Err(invalid(
            path,
            format!("command `{command}` is not in exec.allow (allowed: {allowed})"),
        ))
    }

    async fn exec(&self, p: ExecPayload) -> Result<HandlerOutput, HandlerError> {
        self.check_payload(&p)
            .map_err(|e| HandlerError::Permanent(e.to_string()))?;
        let program = resolve(&p.command).ok_or_else(|| {
            HandlerError::Permanent(format!(
                "command `{}` not found on the worker's PATH",
                p.command
            ))
        })?;
        if let Some(cwd) = &p.cwd
            && !Path::new(cwd).is_dir()
        {
            // Checked here because spawn would report a missing cwd as "not found", the
            // same error as a missing program.
            return Err(HandlerError::Permanent(format!(
                "cwd `{cwd}` is not a directory"
            )));
        }

        let mut cmd = Command::new(&program);
        cmd.args(&p.args)
            .env_clear()
            .envs(
                INHERITED_ENV
                    .iter()
                    .filter_map(|k| Some((k, std::env::var_os(k)?))),
            )
            .envs(&p.env)
            .stdin(if p.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // The worker enforces timeouts by dropping this future: the child must die
            // with it rather than run on unsupervised.
            .kill_on_drop(true);
        if let Some(cwd) = &p.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd.spawn().map_err(|e| spawn_error(&p.command, e))?;

        let limit = self.config.max_output_bytes;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let input = p.stdin.unwrap_or_default();
        // Feed stdin and drain both pipes at once: doing them in turn deadlocks as soon
        // as the program blocks on a full pipe we are not reading.
        let feed = async move {
            if let Some(mut w) = stdin {
                // A program may exit without reading its input; a broken pipe is fine.
                let _ = w.write_all(input.as_bytes()).await;
                // Dropping `w` closes stdin so that readers like `cat` see EOF.
            }
        };
        let (_, out, err, status) = tokio::join!(
            feed,
            capture(stdout, limit),
            capture(stderr, limit),
            child.wait()
        );
        let status = status
            .map_err(|e| HandlerError::Retryable(format!("waiting for `{}`: {e}", p.command)))?;
        let (out, out_cut) = out.map_err(|e| read_error(&p.command, e))?;
        let (err, err_cut) = err.map_err(|e| read_error(&p.command, e))?;
        let stdout = utf8_head(&out, out_cut);
        let stderr = utf8_head(&err, err_cut);
        if !status.success() {
            let tail = tail(&stderr, STDERR_TAIL_CHARS);
            return Err(HandlerError::Retryable(if tail.is_empty() {
                format!("`{}` {status}", p.command)
            } else {
                format!("`{}` {status}: {tail}", p.command)
            }));
        }
        Ok(Some(json!({
            "exit_code": status.code(),
            "stdout": stdout,
            "stderr": stderr,
            "truncated": out_cut || err_cut,
        })))
    }
}

#[async_trait]
impl Handler for ExecHandler {
    async fn run(&self, ctx: JobContext) -> Result<HandlerOutput, HandlerError> {
        let p: ExecPayload = decode("exec", &ctx.job.payload)?;
        self.exec(p).await
    }
}

fn no_nul(path: &str, s: &str) -> Result<(), PayloadError> {
    if s.contains('\0') {
        return Err(invalid(path, "must not contain a NUL character"));
    }
    Ok(())
}

/// Environment names must be usable, and must not load code into the program: with
/// `LD_PRELOAD` and friends a submitter could run anything through an allowlisted one.
fn check_env_name(name: &str) -> Result<(), PayloadError> {
    let path = format!("payload.env.{name}");
    if name.is_empty() || name.contains(['=', '\0']) {
        return Err(invalid(
            path,
            "variable names must be non-empty, without `=` or NUL",
        ));
    }
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("LD_") || upper.starts_with("DYLD_") {
        return Err(invalid(
            path,
            format!("`{name}` may not be set: it changes which code the program loads"),
        ));
    }
    Ok(())
}

/// Finds the program to start. Bare names are looked up on the worker's own PATH here,
/// not by the spawn: a spawn would search the child's PATH, which the payload's `env`
/// can set, and so run a different program than the allowlisted one.
fn resolve(command: &str) -> Option<PathBuf> {
    let path = Path::new(command);
    if path.is_absolute() {
        return Some(path.to_path_buf());
    }
    let search: OsString = std::env::var_os("PATH")?;
    std::env::split_paths(&search)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(command))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

fn spawn_error(command: &str, e: std::io::Error) -> HandlerError {
    use std::io::ErrorKind::*;
    let msg = format!("cannot start `{command}`: {e}");
    match e.kind() {
        // The program (or its interpreter) is missing or unusable: the same job would
        // fail the same way every time.
        NotFound | PermissionDenied | InvalidInput => HandlerError::Permanent(msg),
        // Out of processes, file descriptors, memory ...: may pass later.
        _ => HandlerError::Retryable(msg),
    }
}

fn read_error(command: &str, e: std::io::Error) -> HandlerError {
    HandlerError::Retryable(format!("reading output of `{command}`: {e}"))
}

/// Reads a pipe to its end, keeping the first `limit` bytes. Reading on past the limit
/// (and discarding) keeps the program from blocking on a full pipe.
async fn capture(
    pipe: Option<impl AsyncRead + Unpin>,
    limit: usize,
) -> std::io::Result<(Vec<u8>, bool)> {
    let Some(mut pipe) = pipe else {
        return Ok((Vec::new(), false));
    };
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 8192];
    loop {
        let n = pipe.read(&mut buf).await?;
        if n == 0 {
            return Ok((kept, truncated));
        }
        let room = limit - kept.len();
        if n > room {
            truncated = true;
        }
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(allow: &[&str]) -> ExecHandler {
        ExecHandler::new(&ExecSection {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            max_output_bytes: 1024,
        })
    }

    #[test]
    fn refuses_relative_paths_and_loader_variables() {
        let h = handler(&["./tool", "echo"]);
        let e = h.check(&json!({"command": "./tool"})).unwrap_err();
        assert!(e.to_string().contains("bare program name"), "{e}");
        let e = h
            .check(&json!({"command": "echo", "env": {"LD_PRELOAD": "/tmp/x.so"}}))
            .unwrap_err();
        assert!(e.to_string().starts_with("payload.env.LD_PRELOAD:"), "{e}");
        let e = h
            .check(&json!({"command": "echo", "args": ["a\u{0}b"]}))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "payload.args[0]: must not contain a NUL character"
        );
    }

    #[test]
    fn empty_allowlist_says_so() {
        let e = handler(&[]).check(&json!({"command": "ls"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "payload.command: command `ls` is not in exec.allow (allowed: none: exec.allow is empty)"
        );
    }

    #[test]
    fn resolves_bare_names_on_path() {
        let p = resolve("sh").expect("sh on PATH");
        assert!(p.is_absolute() && p.ends_with("sh"), "{}", p.display());
        assert!(resolve("no-such-program-jobmesh").is_none());
    }
}
