//! The Lua scripts behind every atomic operation, and how they are sent: `EVALSHA`, with
//! the script loaded again when Redis answers `NOSCRIPT` (after a restart or a
//! `SCRIPT FLUSH`). Script text is fixed at compile time; data travels only as
//! arguments.

use std::sync::LazyLock;

use redis::aio::ConnectionManager;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind, Value};

/// A job script: the shared helpers followed by the script's own body.
macro_rules! job_script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            include_str!(concat!("lua/", $file))
        ))
    };
}

/// Every script, hashed once.
pub(crate) struct Scripts {
    pub push: Script,
    pub remove: Script,
    pub take: Script,
    pub heartbeat: Script,
    pub alive: Script,
}

pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    push: job_script!("push.lua"),
    remove: job_script!("remove.lua"),
    take: job_script!("take.lua"),
    heartbeat: Script::new(include_str!("lua/heartbeat.lua")),
    alive: Script::new(include_str!("lua/alive.lua")),
});

/// `EVALSHA script numkeys keys...`, ready for arguments.
pub(crate) fn evalsha(script: &Script, keys: &[&str]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    cmd
}

fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// Runs one script call, loading the script once if Redis does not know it.
pub(crate) async fn run<T: FromRedisValue>(
    conn: &mut ConnectionManager,
    script: &Script,
    cmd: &Cmd,
) -> RedisResult<T> {
    match cmd.query_async(conn).await {
        Err(e) if is_noscript(&e) => {
            script.load_async(conn).await?;
            cmd.query_async(conn).await
        }
        other => other,
    }
}

/// Runs several calls of one script in a single pipeline (one round trip). Calls that
/// met `NOSCRIPT` did nothing; they are sent again after the script is loaded. Any other
/// server error fails the whole batch (calls before it may have been applied: each
/// call is atomic, the batch is not).
pub(crate) async fn run_pipelined(
    conn: &mut ConnectionManager,
    script: &Script,
    cmds: &[Cmd],
) -> RedisResult<Vec<Value>> {
    if cmds.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for cmd in cmds {
        pipe.add_command(cmd.clone());
    }
    let mut replies: Vec<Value> = pipe.query_async(conn).await?;
    let mut loaded = false;
    for (reply, cmd) in replies.iter_mut().zip(cmds) {
        if let Value::ServerError(err) = reply {
            if err.kind() == Some(ServerErrorKind::NoScript) {
                if !loaded {
                    script.load_async(conn).await?;
                    loaded = true;
                }
                *reply = cmd.query_async(conn).await?;
            } else {
                return Err(err.clone().into());
            }
        }
    }
    Ok(replies)
}
