//! Container ids: what is valid, and where a container lives on disk.

use crate::error::{ApiError, ErrorKind};

/// The longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 1024;

/// Ids that start with this belong to paddockd's own files in the state root
/// (`paddockd.sock`, `paddockd.pid`, ...), so no container may use it.
pub const RESERVED_PREFIX: &str = "paddockd.";

/// The longest directory name a container gets; longer ids are shortened with a hash.
const MAX_DIR_NAME: usize = 200;

/// Checks that `id` is a valid container id: `^[A-Za-z0-9_+.-]+$`, not `.` or `..`, at most
/// [`MAX_ID_LEN`] bytes, and not starting with [`RESERVED_PREFIX`].
pub fn validate_id(id: &str) -> Result<(), ApiError> {
    let invalid =
        |why: String| Err(ApiError::new(ErrorKind::InvalidId, format!("invalid container id {}: {why}", show_id(id))));
    if id.is_empty() {
        return invalid("it must not be empty".into());
    }
    if id.len() > MAX_ID_LEN {
        return invalid(format!("it is {} bytes long; at most {MAX_ID_LEN} are allowed", id.len()));
    }
    if id == "." || id == ".." {
        return invalid("'.' and '..' are not ids".into());
    }
    if let Some(bad) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '.' | '-'))) {
        return invalid(format!("{bad:?} is not allowed; use letters, digits, '_', '+', '.' and '-'"));
    }
    if id.starts_with(RESERVED_PREFIX) {
        return invalid(format!("ids starting with {RESERVED_PREFIX:?} are reserved for paddockd's own files"));
    }
    Ok(())
}

/// `id` quoted for a message, shortened when it is long.
pub fn show_id(id: &str) -> String {
    if id.len() <= 80 {
        format!("{id:?}")
    } else {
        let mut cut = 64;
        while !id.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{:?}... ({} bytes)", &id[..cut], id.len())
    }
}

/// The name of the container's directory under the state root.
///
/// It is the id itself when that fits a file name comfortably; a longer id keeps its first
/// bytes and gets a hash of the whole id (after `~`, which no id contains, so it can never
/// collide with another id's directory).
pub fn dir_name(id: &str) -> String {
    if id.len() <= MAX_DIR_NAME {
        return id.to_string();
    }
    format!("{}~{:016x}", &id[..MAX_DIR_NAME - 18], fnv1a64(id.as_bytes()))
}

/// FNV-1a: a stable 64-bit hash that needs no dependency. It only has to tell apart long ids
/// that share their first 182 bytes; the full id is checked in the metadata anyway.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids() {
        for id in ["a", "web-1", "A_b+c.d", "x".repeat(MAX_ID_LEN).as_str(), "...", ".hidden"] {
            validate_id(id).unwrap_or_else(|e| panic!("{id}: {e}"));
        }
    }

    #[test]
    fn invalid_ids_name_the_problem() {
        let cases: [(&str, &str); 7] = [
            ("", "empty"),
            (".", "'.'"),
            ("..", "'..'"),
            ("../x", "'/'"),
            ("a/b", "'/'"),
            ("a b", "' '"),
            ("paddockd.sock", "reserved"),
        ];
        for (id, needle) in cases {
            let err = validate_id(id).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidId);
            assert!(err.message.contains(needle), "{id:?}: {}", err.message);
        }
        let long = "y".repeat(2000);
        let err = validate_id(&long).unwrap_err();
        assert!(err.message.contains("2000 bytes"), "{}", err.message);
        assert!(err.message.len() < 200, "message repeats the whole id");
        assert!(validate_id("é").is_err());
    }

    #[test]
    fn long_ids_get_distinct_short_dirs() {
        let a = format!("{}a", "x".repeat(600));
        let b = format!("{}b", "x".repeat(600));
        assert_ne!(dir_name(&a), dir_name(&b));
        assert!(dir_name(&a).len() <= MAX_DIR_NAME);
        assert_eq!(dir_name("short"), "short");
        assert_eq!(dir_name(&"z".repeat(200)), "z".repeat(200));
    }
}
