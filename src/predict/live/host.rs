//! The node's own host as the failure model samples it ([`NodeSignal::Host`]): the load
//! average per core (`/proc/loadavg` over the machine's online CPUs) and the share
//! of memory in use, the node's cgroup's against its limit where it has one, else the
//! machine's (`/proc/meminfo`, `MemAvailable` of `MemTotal`).
//!
//! A cgroup's use is its working set, as the kubelet counts it: `memory.current` less
//! the `inactive_file` of its `memory.stat` (floored at 0), of `memory.max`.
//! `memory.current` alone counts the page cache, which the kernel lets grow up to the
//! limit: a container doing file IO would read 95-99% used with nothing under
//! pressure. Where `memory.stat` cannot be read the cgroup's memory is left out of the
//! sample rather than counted with its cache.
//!
//! The load average is the whole machine's (a container sees the host's
//! `/proc/loadavg`), so it is divided by the whole machine's CPUs: the `cpuN` lines of
//! `/proc/stat`, not [`std::thread::available_parallelism`], which honours the
//! cgroup's CPU quota and the affinity mask. A 2-CPU pod on a busy 64-core host would
//! otherwise read the machine's load over 2 cores, 32 times too high. Only where
//! `/proc/stat` cannot be read is `available_parallelism` the divisor.
//!
//! The parsing is plain functions of the files' text, tested on fixed strings; only
//! [`read_sample`] touches the file system. What the OS does not give (another OS, no
//! `/proc`, a cgroup without a limit) is left out of the sample, not made up.
//!
//! [`NodeSignal::Host`]: crate::predict::failure::NodeSignal::Host

use std::path::{Path, PathBuf};

/// Why a host file's text could not be read as expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// A field the format always has is missing.
    #[error("{file}: no {field}")]
    Missing {
        /// The file's name.
        file: &'static str,
        /// The field looked for.
        field: &'static str,
    },
    /// A field is not a number.
    #[error("{file}: {field} is not a number: {text:?}")]
    NotANumber {
        /// The file's name.
        file: &'static str,
        /// The field.
        field: &'static str,
        /// What it held.
        text: String,
    },
}

/// One sample of the host, each part where the OS gives it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HostSample {
    /// Load average (1 minute) per core.
    pub load_per_core: Option<f64>,
    /// Share of memory in use, 0 to 1.
    pub memory_used: Option<f64>,
}

fn number(file: &'static str, field: &'static str, text: &str) -> Result<f64, HostError> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| HostError::NotANumber {
            file,
            field,
            text: text.chars().take(32).collect(),
        })
}

/// The 1-minute load average of `/proc/loadavg` (`"0.52 0.58 0.59 1/467 12345"`).
pub fn parse_loadavg(text: &str) -> Result<f64, HostError> {
    let first = text.split_whitespace().next().ok_or(HostError::Missing {
        file: "loadavg",
        field: "1-minute load",
    })?;
    number("loadavg", "1-minute load", first)
}

/// The share of memory in use from `/proc/meminfo`: `1 - MemAvailable / MemTotal`.
pub fn parse_meminfo(text: &str) -> Result<f64, HostError> {
    let field = |name: &'static str| -> Result<f64, HostError> {
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .ok_or(HostError::Missing {
                file: "meminfo",
                field: name,
            })?;
        let value = line.trim().trim_end_matches("kB");
        number("meminfo", name, value)
    };
    let total = field("MemTotal")?;
    let available = field("MemAvailable")?;
    if total <= 0.0 {
        return Err(HostError::NotANumber {
            file: "meminfo",
            field: "MemTotal",
            text: "0".into(),
        });
    }
    Ok((1.0 - available / total).clamp(0.0, 1.0))
}

/// The `inactive_file` bytes of a cgroup v2 `memory.stat` (`"anon 123\nfile 456\n..."`):
/// page cache the kernel reclaims first, not in use.
pub fn parse_inactive_file(stat: &str) -> Result<f64, HostError> {
    let value = stat
        .lines()
        .find_map(|l| {
            let (key, value) = l.split_once(' ')?;
            (key == "inactive_file").then_some(value)
        })
        .ok_or(HostError::Missing {
            file: "memory.stat",
            field: "inactive_file",
        })?;
    number("memory.stat", "inactive_file", value)
}

/// The share of its limit a cgroup v2 uses, its working set: `memory.current` less the
/// `inactive_file` of `memory.stat` (floored at 0), of `memory.max` (`None` when the
/// limit is `max`: no limit, so the machine's memory is what counts).
pub fn parse_cgroup_memory(current: &str, max: &str, stat: &str) -> Result<Option<f64>, HostError> {
    let max = max.trim();
    if max == "max" {
        return Ok(None);
    }
    let limit = number("memory.max", "limit", max)?;
    if limit <= 0.0 {
        return Ok(None);
    }
    let current = number("memory.current", "usage", current)?;
    let inactive = parse_inactive_file(stat)?;
    let working_set = (current - inactive).max(0.0);
    Ok(Some((working_set / limit).clamp(0.0, 1.0)))
}

/// What [`HostRoot::cgroup_memory`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
enum CgroupMemory {
    /// No cgroup v2 limit found: the machine's memory counts.
    NoLimit,
    /// A limit, but its use could not be read (no `memory.stat`): left out.
    Unreadable,
    /// The share of the limit in use.
    Share(f64),
}

/// The machine's online CPUs from `/proc/stat`: its `cpuN` lines (the `cpu` line is
/// their sum; offline CPUs have none). `None` where there is none.
pub fn parse_stat_cpus(text: &str) -> Option<usize> {
    let n = text
        .lines()
        .filter_map(|l| l.strip_prefix("cpu")?.split(' ').next())
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .count();
    (n > 0).then_some(n)
}

/// The process's cgroup v2 path from `/proc/self/cgroup` (its `0::/path` line).
pub fn parse_cgroup_path(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim)
}

/// Where [`read_sample`] reads: `/` in production, a directory laid out like it in
/// tests.
#[derive(Debug, Clone)]
pub struct HostRoot(PathBuf);

impl Default for HostRoot {
    fn default() -> Self {
        Self(PathBuf::from("/"))
    }
}

impl HostRoot {
    /// Files under `root` instead of `/`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self(root.into())
    }

    fn read(&self, path: impl AsRef<Path>) -> Option<String> {
        let rel = path.as_ref().strip_prefix("/").unwrap_or(path.as_ref());
        std::fs::read_to_string(self.0.join(rel)).ok()
    }

    /// The machine's online CPUs (`/proc/stat`), else the cores this process may use
    /// ([`std::thread::available_parallelism`]), else 1.
    pub fn cores(&self) -> usize {
        self.read("/proc/stat")
            .and_then(|t| parse_stat_cpus(&t))
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The share of its limit the process's cgroup (v2) uses, where it has a limit:
    /// its own cgroup's files, else those at the root of the cgroup mount (a
    /// container's namespace shows its own cgroup there).
    fn cgroup_memory(&self) -> CgroupMemory {
        let own = self
            .read("/proc/self/cgroup")
            .and_then(|t| parse_cgroup_path(&t).map(str::to_owned));
        let dirs = own
            .iter()
            .map(|p| format!("/sys/fs/cgroup/{}", p.trim_start_matches('/')))
            .chain(std::iter::once("/sys/fs/cgroup".to_owned()));
        for dir in dirs {
            let (Some(current), Some(max)) = (
                self.read(format!("{dir}/memory.current")),
                self.read(format!("{dir}/memory.max")),
            ) else {
                continue;
            };
            // Without memory.stat the page cache cannot be told from use: counting it
            // would read a cgroup doing file IO as full.
            let stat = self.read(format!("{dir}/memory.stat")).unwrap_or_default();
            match parse_cgroup_memory(&current, &max, &stat) {
                Ok(Some(share)) => return CgroupMemory::Share(share),
                Ok(None) => return CgroupMemory::NoLimit,
                Err(e) => {
                    tracing::debug!(error = %e, "cgroup memory unreadable");
                    return CgroupMemory::Unreadable;
                }
            }
        }
        CgroupMemory::NoLimit
    }
}

/// The host now, with `cores` the machine's online CPUs (from [`HostRoot::cores`]: the
/// load average is the machine's). Blocking (small reads of virtual files).
pub fn read_sample(root: &HostRoot, cores: usize) -> HostSample {
    let load_per_core = root
        .read("/proc/loadavg")
        .and_then(|t| parse_loadavg(&t).ok())
        .map(|l| l / cores.max(1) as f64);
    let memory_used = match root.cgroup_memory() {
        CgroupMemory::Share(share) => Some(share),
        CgroupMemory::Unreadable => None,
        CgroupMemory::NoLimit => root
            .read("/proc/meminfo")
            .and_then(|t| parse_meminfo(&t).ok()),
    };
    HostSample {
        load_per_core,
        memory_used,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       16000000 kB\n\
        MemFree:         1000000 kB\n\
        MemAvailable:    4000000 kB\n\
        Buffers:          200000 kB\n";

    #[test]
    fn loadavg_gives_the_one_minute_load() {
        assert_eq!(parse_loadavg("0.52 0.58 0.59 1/467 12345\n"), Ok(0.52));
        assert_eq!(parse_loadavg("12.00 3 1 9/9 1"), Ok(12.0));
        assert!(matches!(parse_loadavg(""), Err(HostError::Missing { .. })));
        assert!(matches!(
            parse_loadavg("x 1 1"),
            Err(HostError::NotANumber { .. })
        ));
    }

    #[test]
    fn meminfo_gives_the_share_not_available() {
        assert_eq!(parse_meminfo(MEMINFO), Ok(0.75));
        // MemAvailable is required: MemFree alone would count the page cache as used.
        let no_available = "MemTotal: 100 kB\nMemFree: 10 kB\n";
        assert_eq!(
            parse_meminfo(no_available),
            Err(HostError::Missing {
                file: "meminfo",
                field: "MemAvailable"
            })
        );
        assert!(parse_meminfo("MemTotal: 0 kB\nMemAvailable: 0 kB\n").is_err());
    }

    #[test]
    fn a_cgroup_limit_gives_the_share_and_no_limit_gives_none() {
        assert_eq!(
            parse_cgroup_memory("536870912\n", "1073741824\n", "inactive_file 0\n"),
            Ok(Some(0.5))
        );
        assert_eq!(parse_cgroup_memory("536870912\n", "max\n", ""), Ok(None));
        assert!(parse_cgroup_memory("lots", "1024", "inactive_file 0\n").is_err());
        assert_eq!(
            parse_cgroup_path("0::/system.slice/jobmesh.service\n"),
            Some("/system.slice/jobmesh.service")
        );
        // A hybrid hierarchy: the v1 lines are not the v2 path.
        assert_eq!(parse_cgroup_path("4:memory:/x\n0::/\n"), Some("/"));
        assert_eq!(parse_cgroup_path("4:memory:/x\n"), None);
    }

    const MEMORY_STAT: &str = "anon 104857600\n\
        file 943718400\n\
        kernel 8388608\n\
        active_anon 100000000\n\
        inactive_anon 4857600\n\
        active_file 104857600\n\
        inactive_file 838860800\n\
        unevictable 0\n";

    #[test]
    fn memory_stat_gives_the_inactive_file_and_the_working_set_leaves_it_out() {
        assert_eq!(parse_inactive_file(MEMORY_STAT), Ok(838_860_800.0));
        // `file` and `active_file` are not `inactive_file`.
        assert_eq!(
            parse_inactive_file("file 5\nactive_file 5\n"),
            Err(HostError::Missing {
                file: "memory.stat",
                field: "inactive_file"
            })
        );
        assert!(matches!(
            parse_inactive_file("inactive_file x\n"),
            Err(HostError::NotANumber { .. })
        ));
        // A 1 GiB limit filled by page cache: 1000 MiB current of which 800 MiB
        // inactive file is a working set of 200 MiB, not 98%.
        let share = parse_cgroup_memory("1048576000\n", "1073741824\n", MEMORY_STAT)
            .unwrap()
            .unwrap();
        assert!((share - 200.0 / 1024.0).abs() < 1e-12, "{share}");
        // More inactive file than current (the two are read apart): 0, not negative.
        assert_eq!(
            parse_cgroup_memory("100\n", "400\n", "inactive_file 300\n"),
            Ok(Some(0.0))
        );
        // No inactive_file: an error, not the cache counted as used.
        assert!(parse_cgroup_memory("100\n", "400\n", "anon 100\n").is_err());
    }

    #[test]
    fn proc_stat_gives_the_online_cpus() {
        let stat = "cpu  4705 356 584 3699 23 23 0 0 0 0\n\
            cpu0 1393 280 134 1057 8 8 0 0 0 0\n\
            cpu1 1110 76 150 904 5 5 0 0 0 0\n\
            cpu3 1202 0 300 869 5 5 0 0 0 0\n\
            intr 114930548 113199788 3 0 5 263 0 4\n\
            ctxt 1990473\n\
            btime 1062191376\n\
            cpufreq 1\n\
            procs_running 2\n";
        // cpu2 offline: three lines, the sum line not counted.
        assert_eq!(parse_stat_cpus(stat), Some(3));
        assert_eq!(parse_stat_cpus("intr 1\n"), None);
        assert_eq!(parse_stat_cpus(""), None);
    }

    #[test]
    fn a_sample_reads_the_cgroup_first_then_the_machine() {
        let dir = tempfile::tempdir().unwrap();
        let put = |path: &str, text: &str| {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        put("proc/loadavg", "3.00 1 1 1/1 1\n");
        put("proc/meminfo", MEMINFO);
        let root = HostRoot::at(dir.path());
        // No /proc/stat: the cores this process may use.
        assert_eq!(
            root.cores(),
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        put(
            "proc/stat",
            "cpu  1 1 1 1\ncpu0 1 1\ncpu1 1 1\ncpu2 1 1\ncpu3 1 1\n",
        );
        assert_eq!(root.cores(), 4);
        let s = read_sample(&root, root.cores());
        assert_eq!(s.load_per_core, Some(0.75));
        assert_eq!(s.memory_used, Some(0.75));
        put("proc/self/cgroup", "0::/jobs\n");
        put("sys/fs/cgroup/jobs/memory.current", "300\n");
        put("sys/fs/cgroup/jobs/memory.max", "400\n");
        // A limit but no memory.stat: memory left out, neither the cache counted nor
        // the machine's taken for the cgroup's.
        assert_eq!(read_sample(&root, 4).memory_used, None);
        assert_eq!(read_sample(&root, 4).load_per_core, Some(0.75));
        put(
            "sys/fs/cgroup/jobs/memory.stat",
            "anon 100\nactive_file 0\ninactive_file 200\n",
        );
        assert_eq!(read_sample(&root, 4).memory_used, Some(0.25));
        // No limit: the machine's.
        put("sys/fs/cgroup/jobs/memory.max", "max\n");
        assert_eq!(read_sample(&root, 4).memory_used, Some(0.75));
        // No /proc at all: nothing made up.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            read_sample(&HostRoot::at(empty.path()), 4),
            HostSample::default()
        );
    }
}
