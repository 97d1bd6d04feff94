//! `exec`: runs an allowlisted program, without a shell.
//!
//! The program is started directly with its argv, so `;`, `$(...)`, globs and quotes in
//! arguments reach it literally. The allowlist (`[exec] allow`) is checked when the job
//! is submitted and again when it runs (the configuration may have changed in between).
//!
//! Whoever submits a job chooses the program's arguments and stdin: an allowlisted
//! program is only as safe as everything it can be told to do (see the README's
//! "Security" section). The environment is an allowlist too: the program sees
//! [`EXEC_BASE_ENV`] plus the variables named in `exec.env_allow`, nothing else from
//! the node, and a job's `env` may set only names on that list, so no submitter can
//! hand a shell exported functions (`BASH_FUNC_*`), a loader (`LD_PRELOAD`) or a `PATH`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::exec_control::{ControlLine, DEFAULT_SNOOZE, SNOOZE_EXIT_CODE, capture};
use super::{check_string_map, decode, invalid, string, tail, utf8_head};
use crate::config::ExecSection;
use crate::handler::fence::{self, Fence};
use crate::handler::{Handler, HandlerError, HandlerOutput, JobContext, Registry};
use crate::payload::{JsonType, PayloadError, PayloadRules, Schema};
use crate::redact::Redactor;

/// Longest command, argument, `cwd` or environment value accepted, in characters.
const MAX_ARG_CHARS: usize = 64 * 1024;
/// Most arguments accepted.
const MAX_ARGS: usize = 1024;
/// Characters of stderr quoted in the error of a failed run.
const STDERR_TAIL_CHARS: usize = 500;
/// The environment every program gets, whatever the node's: a `PATH` of the system
/// directories and a UTF-8 locale. Everything else of the node's (its database URLs,
/// tokens ...) is withheld unless `exec.env_allow` names it.
pub const EXEC_BASE_ENV: &[(&str, &str)] = &[("PATH", "/usr/bin:/bin"), ("LANG", "C.UTF-8")];

/// Variables that change which code a program runs or how a shell parses: never on
/// `exec.env_allow`, whatever the operator writes, since a submitter could set them.
const CODE_VARIABLES: &[&str] = &[
    "PATH",
    "BASH_ENV",
    "ENV",
    "IFS",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "GCONV_PATH",
    "NODE_OPTIONS",
    "PYTHONSTARTUP",
    "PYTHONPATH",
    "PYTHONHOME",
    "PERL5OPT",
    "PERL5LIB",
    "RUBYOPT",
    "RUBYLIB",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "PYTHONWARNINGS",
    "PERL5DB",
    // The C library and OpenSSL load code or parse attacker-chosen files from these.
    "GLIBC_TUNABLES",
    "LOCPATH",
    "NLSPATH",
    "OPENSSL_CONF",
    "OPENSSL_ENGINES",
];

/// Prefixes of such variables (loaders, exported shell functions).
const CODE_PREFIXES: &[&str] = &["LD_", "DYLD_", "BASH_FUNC_"];

/// Checks `[exec]`: programs are bare names or absolute paths, `env_allow` holds plain
/// variable names none of which loads code, and `env_secret` names are on `env_allow`.
pub fn validate_config(c: &ExecSection) -> Result<(), String> {
    for a in &c.allow {
        if a.is_empty() || a.contains('\0') || (a.contains('/') && !Path::new(a).is_absolute()) {
            return Err(format!(
                "exec.allow: `{a}` must be a bare program name or an absolute path"
            ));
        }
    }
    for name in &c.env_allow {
        if !plain_variable_name(name) {
            return Err(format!(
                "exec.env_allow: `{name}` is not a variable name (letters, digits and `_`, \
                 not starting with a digit)"
            ));
        }
        if loads_code(name) {
            return Err(format!(
                "exec.env_allow: `{name}` may not be passed: it changes which code a program runs"
            ));
        }
    }
    for name in &c.env_secret {
        if !c.env_allow.contains(name) {
            return Err(format!(
                "exec.env_secret: `{name}` is not on exec.env_allow"
            ));
        }
    }
    if c.max_output_bytes == 0 {
        return Err("exec.max_output_bytes must be at least 1".into());
    }
    Ok(())
}

fn plain_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn loads_code(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    CODE_VARIABLES.contains(&upper.as_str()) || CODE_PREFIXES.iter().any(|p| upper.starts_with(p))
}

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

/// The `exec` handler. Output: `{exit_code, stdout, stderr, truncated}`; exit code 75
/// snoozes the job and stdout lines report progress (see `exec_control`); another
/// non-zero exit is a retryable failure quoting the end of stderr, a missing program a
/// permanent one.
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
            self.check_env_name(k)?;
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

    /// Environment names a job may set: plain names on `exec.env_allow`. Anything else
    /// (`BASH_FUNC_x%%`, `LD_PRELOAD`, `PATH` ...) could make an allowlisted program run
    /// other code.
    fn check_env_name(&self, name: &str) -> Result<(), PayloadError> {
        let path = format!("payload.env.{name}");
        if !plain_variable_name(name) {
            return Err(invalid(
                path,
                "variable names are letters, digits and `_`, not starting with a digit",
            ));
        }
        if name.starts_with(fence::RESERVED_ENV_PREFIX) {
            return Err(invalid(
                path,
                format!(
                    "`{}*` variables are set by the node (the job's id, attempt and lease token)",
                    fence::RESERVED_ENV_PREFIX
                ),
            ));
        }
        if self.config.env_allow.iter().any(|a| a == name) {
            return Ok(());
        }
        let allowed = if self.config.env_allow.is_empty() {
            "none: exec.env_allow is empty".to_string()
        } else {
            self.config.env_allow.join(", ")
        };
        Err(invalid(
            path,
            format!("`{name}` is not in exec.env_allow (allowed: {allowed})"),
        ))
    }

    /// The child's whole environment: the fixed base, the node's values of
    /// `env_allow`, the job's own values (which the check kept to `env_allow`), then the
    /// attempt's fence (`JOBMESH_*`), which nothing else may set.
    fn environment(&self, p: &ExecPayload, fence: &Fence) -> BTreeMap<String, OsString> {
        let mut env: BTreeMap<String, OsString> = EXEC_BASE_ENV
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        for name in &self.config.env_allow {
            if let Some(v) = std::env::var_os(name) {
                env.insert(name.clone(), v);
            }
        }
        for (k, v) in &p.env {
            env.insert(k.clone(), OsString::from(v));
        }
        for (k, v) in fence.env() {
            env.insert(k.to_string(), OsString::from(v));
        }
        env
    }

    /// The values of this run that must not reach the record: those of `env_secret`.
    fn secrets(&self, p: &ExecPayload) -> Redactor {
        let mut r = Redactor::new();
        for name in &self.config.env_secret {
            if let Ok(v) = std::env::var(name) {
                r.add(v);
            }
            if let Some(v) = p.env.get(name) {
                r.add(v.as_str());
            }
        }
        r
    }

    async fn exec(&self, p: ExecPayload, ctx: &JobContext) -> Result<HandlerOutput, HandlerError> {
        let secrets = self.secrets(&p);
        let redacted = |e: HandlerError| e.map_message(|m| secrets.redact(m));
        let mut out = self.run_program(p, ctx, &secrets).await.map_err(redacted)?;
        if !secrets.is_empty()
            && let Some(Value::Object(fields)) = out.as_mut()
        {
            for stream in ["stdout", "stderr"] {
                if let Some(Value::String(text)) = fields.get_mut(stream) {
                    *text = secrets.redact(text);
                }
            }
        }
        Ok(out)
    }

    async fn run_program(
        &self,
        p: ExecPayload,
        ctx: &JobContext,
        secrets: &Redactor,
    ) -> Result<HandlerOutput, HandlerError> {
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
            .envs(self.environment(&p, &ctx.fence()))
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
        let pid = child.id();
        // Control lines on stdout (see `exec_control`): progress is reported as it
        // comes, the last snooze delay kept for the exit code.
        // A mutex, not a plain variable: the capture borrows it until `run` is dropped.
        let snooze_delay: std::sync::Mutex<Option<Result<Duration, String>>> =
            std::sync::Mutex::new(None);
        let on_control = |c: ControlLine| match c {
            ControlLine::Progress { fraction, message } => {
                // The job's secret values are masked here: the progress message reaches
                // the record and the event stream as its output does.
                if let Err(e) = ctx.progress(fraction, &secrets.redact(&message)) {
                    tracing::debug!(job = %ctx.job.id, error = %e, "exec progress line refused");
                }
            }
            ControlLine::Snooze(delay) => {
                *snooze_delay.lock().unwrap_or_else(|p| p.into_inner()) = Some(delay);
            }
        };
        let run = async {
            tokio::join!(
                feed,
                capture(stdout, limit, on_control),
                capture(stderr, limit, |_| {}),
                child.wait()
            )
        };
        tokio::pin!(run);
        let (_, out, err, status) = tokio::select! {
            done = &mut run => done,
            _ = ctx.cancel.cancelled() => {
                // Ask the program to stop and let it finish on its own; the worker
                // drops this future after `workers.cancel_grace`, which kills it.
                terminate(pid);
                run.await
            }
        };
        let status = status
            .map_err(|e| HandlerError::Retryable(format!("waiting for `{}`: {e}", p.command)))?;
        let (out, out_cut) = out.map_err(|e| read_error(&p.command, e))?;
        let (err, err_cut) = err.map_err(|e| read_error(&p.command, e))?;
        let stdout = utf8_head(&out, out_cut);
        let stderr = utf8_head(&err, err_cut);
        if status.code() == Some(SNOOZE_EXIT_CODE) {
            let delay = snooze_delay
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            return Err(match delay {
                None => HandlerError::Snooze(DEFAULT_SNOOZE),
                Some(Ok(delay)) => HandlerError::Snooze(delay),
                Some(Err(e)) => HandlerError::Retryable(format!(
                    "`{}` exited {SNOOZE_EXIT_CODE} to snooze, but {e}",
                    p.command
                )),
            });
        }
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
        self.exec(p, &ctx).await
    }
}

/// Sends SIGTERM to the program (nothing on other systems, where the kill at the end
/// of the grace is all there is). A program that already exited is no error.
fn terminate(pid: Option<u32>) {
    #[cfg(unix)]
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    #[cfg(not(unix))]
    let _ = pid;
}

fn no_nul(path: &str, s: &str) -> Result<(), PayloadError> {
    if s.contains('\0') {
        return Err(invalid(path, "must not contain a NUL character"));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(allow: &[&str]) -> ExecHandler {
        ExecHandler::new(&ExecSection {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            env_allow: vec!["GREETING".into()],
            max_output_bytes: 1024,
            ..ExecSection::default()
        })
    }

    #[test]
    fn refuses_relative_paths_and_variables_off_the_allowlist() {
        let h = handler(&["./tool", "echo"]);
        let e = h.check(&json!({"command": "./tool"})).unwrap_err();
        assert!(e.to_string().contains("bare program name"), "{e}");
        let e = h
            .check(&json!({"command": "echo", "env": {"LD_PRELOAD": "/tmp/x.so"}}))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "payload.env.LD_PRELOAD: `LD_PRELOAD` is not in exec.env_allow (allowed: GREETING)"
        );
        let e = h
            .check(&json!({"command": "echo", "env": {"BASH_FUNC_x%%": "() { id; }"}}))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("payload.env.BASH_FUNC_x%%: variable names are"),
            "{e}"
        );
        assert!(
            h.check(&json!({"command": "echo", "env": {"GREETING": "hi"}}))
                .is_ok()
        );
        let e = h
            .check(&json!({"command": "echo", "args": ["a\u{0}b"]}))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "payload.args[0]: must not contain a NUL character"
        );
    }

    #[test]
    fn config_refuses_code_loading_variables() {
        let with = |env_allow: &[&str], env_secret: &[&str]| ExecSection {
            env_allow: env_allow.iter().map(|s| s.to_string()).collect(),
            env_secret: env_secret.iter().map(|s| s.to_string()).collect(),
            ..ExecSection::default()
        };
        for bad in [
            "PATH",
            "LD_PRELOAD",
            "ld_library_path",
            "BASH_ENV",
            "BASH_FUNC_f",
            "GLIBC_TUNABLES",
            "OPENSSL_CONF",
            "_JAVA_OPTIONS",
        ] {
            let e = validate_config(&with(&[bad], &[])).unwrap_err();
            assert!(
                e.starts_with(&format!("exec.env_allow: `{bad}` may not be passed")),
                "{e}"
            );
        }
        let e = validate_config(&with(&["BASH_FUNC_f%%"], &[])).unwrap_err();
        assert!(e.contains("is not a variable name"), "{e}");
        let e = validate_config(&with(&["TZ"], &["TOKEN"])).unwrap_err();
        assert_eq!(e, "exec.env_secret: `TOKEN` is not on exec.env_allow");
        assert!(validate_config(&with(&["TZ", "TOKEN"], &["TOKEN"])).is_ok());
        let e = validate_config(&ExecSection {
            allow: vec!["bin/tool".into()],
            ..ExecSection::default()
        })
        .unwrap_err();
        assert!(e.starts_with("exec.allow: `bin/tool`"), "{e}");
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
