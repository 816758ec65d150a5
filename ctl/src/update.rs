//! `ctl update`: the OCI `linux.resources` to apply, from a file (`-r FILE`, `-` for stdin) or
//! from runc's one-value flags.

use std::io::Read;

use anyhow::Context as _;
use serde_json::{json, Map, Value};

use super::args::UpdateArgs;

/// The resources JSON `update` sends: the file's, with the flags' values on top.
pub fn resources_json(args: &UpdateArgs) -> anyhow::Result<String> {
    let mut resources = match &args.resources {
        Some(path) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading the resources from stdin")?;
            parse(&text, "stdin")?
        }
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            parse(&text, &path.display().to_string())?
        }
        None => Map::new(),
    };
    let mut set = |section: &str, key: &str, value: Value| {
        let entry = resources.entry(section).or_insert_with(|| json!({}));
        if let Some(obj) = entry.as_object_mut() {
            obj.insert(key.to_string(), value);
        }
    };
    if let Some(v) = &args.memory {
        set("memory", "limit", json!(bytes(v, "--memory")?));
    }
    if let Some(v) = &args.memory_swap {
        set("memory", "swap", json!(bytes(v, "--memory-swap")?));
    }
    if let Some(v) = &args.memory_reservation {
        set("memory", "reservation", json!(bytes(v, "--memory-reservation")?));
    }
    if let Some(v) = args.cpu_shares {
        set("cpu", "shares", json!(v));
    }
    if let Some(v) = args.cpu_period {
        set("cpu", "period", json!(v));
    }
    if let Some(v) = args.cpu_quota {
        set("cpu", "quota", json!(v));
    }
    if let Some(v) = &args.cpuset_cpus {
        set("cpu", "cpus", json!(v));
    }
    if let Some(v) = &args.cpuset_mems {
        set("cpu", "mems", json!(v));
    }
    if let Some(v) = args.pids_limit {
        set("pids", "limit", json!(v));
    }
    if let Some(v) = args.blkio_weight {
        set("blockIO", "weight", json!(v));
    }
    if resources.is_empty() {
        anyhow::bail!("nothing to update: give --resources FILE or a limit flag (see ctl update --help)");
    }
    Ok(Value::Object(resources).to_string())
}

fn parse(text: &str, from: &str) -> anyhow::Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text).with_context(|| format!("the resources in {from} are not JSON"))? {
        Value::Object(map) => Ok(map),
        _ => anyhow::bail!("the resources in {from} are not a JSON object (OCI linux.resources)"),
    }
}

/// A byte count: a number with an optional k, m, g (or kb, mb, gb; powers of 1024) suffix,
/// or -1 for "no limit".
fn bytes(text: &str, flag: &str) -> anyhow::Result<i64> {
    let lower = text.trim().to_ascii_lowercase();
    if lower == "-1" {
        return Ok(-1);
    }
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let scale: i64 = match unit {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => anyhow::bail!("{flag} {text:?}: unknown unit {unit:?} (use k, m or g)"),
    };
    let n: i64 = digits.parse().with_context(|| format!("{flag} {text:?} is not a byte count"))?;
    n.checked_mul(scale).with_context(|| format!("{flag} {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts() {
        assert_eq!(bytes("100m", "--memory").unwrap(), 100 << 20);
        assert_eq!(bytes("4096", "--memory").unwrap(), 4096);
        assert_eq!(bytes("-1", "--memory-swap").unwrap(), -1);
        assert!(bytes("12x", "--memory").unwrap_err().to_string().contains("unknown unit"));
        assert!(bytes("lots", "--memory").is_err());
    }
}
