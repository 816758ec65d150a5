//! Resolving what the user typed to a container id: the full id, or a prefix of exactly one.

use wire::{ApiError, ErrorKind};

/// Finds the id `query` names among `ids`: an exact match wins; otherwise `query` must be a
/// prefix of exactly one id. An ambiguous prefix is an error that lists the candidates.
pub fn resolve<'a, I>(query: &str, ids: I) -> Result<&'a str, ApiError>
where
    I: IntoIterator<Item = &'a str>,
{
    if query.is_empty() {
        return Err(ApiError::new(ErrorKind::InvalidId, "no container id given"));
    }
    let mut candidates = Vec::new();
    for id in ids {
        if id == query {
            return Ok(id);
        }
        if id.starts_with(query) {
            candidates.push(id);
        }
    }
    match candidates.len() {
        0 => Err(ApiError::not_found(format!("container {} does not exist", wire::ids::show_id(query)))),
        1 => Ok(candidates[0]),
        n => {
            candidates.sort_unstable();
            let shown: Vec<String> = candidates.iter().take(10).map(|c| wire::ids::show_id(c)).collect();
            let more = if n > 10 { format!(" and {} more", n - 10) } else { String::new() };
            Err(ApiError::new(
                ErrorKind::AmbiguousId,
                format!(
                    "container id {} is ambiguous: it could be {}{more}",
                    wire::ids::show_id(query),
                    shown.join(", ")
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: [&str; 4] = ["web", "web-1", "worker", "db"];

    #[test]
    fn exact_id_wins_over_prefix() {
        assert_eq!(resolve("web", IDS).unwrap(), "web");
    }

    #[test]
    fn unique_prefix_resolves() {
        assert_eq!(resolve("wo", IDS).unwrap(), "worker");
        assert_eq!(resolve("web-", IDS).unwrap(), "web-1");
        assert_eq!(resolve("d", IDS).unwrap(), "db");
    }

    #[test]
    fn ambiguous_prefix_names_candidates() {
        let e = resolve("w", IDS).unwrap_err();
        assert_eq!(e.kind, ErrorKind::AmbiguousId);
        for c in ["\"web\"", "\"web-1\"", "\"worker\""] {
            assert!(e.message.contains(c), "{}", e.message);
        }
        assert!(!e.message.contains("db"));
    }

    #[test]
    fn unknown_and_empty() {
        assert_eq!(resolve("x", IDS).unwrap_err().kind, ErrorKind::NotFound);
        assert_eq!(resolve("", IDS).unwrap_err().kind, ErrorKind::InvalidId);
        assert_eq!(resolve("a", []).unwrap_err().kind, ErrorKind::NotFound);
    }
}
