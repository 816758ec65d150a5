//! How ctl prints states.

use wire::ContainerState;

/// `runc state`: the OCI state, indented.
pub fn state_json(state: &ContainerState) -> String {
    serde_json::to_string_pretty(&state.to_oci_json()).unwrap_or_default()
}

/// `runc list --format json`.
pub fn list_json(states: &[ContainerState]) -> String {
    let all: Vec<serde_json::Value> = states.iter().map(ContainerState::to_oci_json).collect();
    serde_json::to_string(&all).unwrap_or_default()
}

/// `runc list`: ID, PID, STATUS, BUNDLE, CREATED, OWNER in aligned columns.
pub fn list_table(states: &[ContainerState]) -> String {
    let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
    let rows: Vec<[String; 6]> = states
        .iter()
        .map(|s| {
            [
                s.id.clone(),
                s.pid.unwrap_or(0).to_string(),
                s.status.to_string(),
                s.bundle.display().to_string(),
                s.created.clone(),
                s.owner.clone(),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let line: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// `ctl ps`: PID, PPID, UID, STARTED, COMMAND in aligned columns.
pub fn ps_table(procs: &[wire::api::ProcessInfo]) -> String {
    let mut out = format!("{:>8} {:>8} {:>6}  {:<20}  {}\n", "PID", "PPID", "UID", "STARTED", "COMMAND");
    for p in procs {
        out.push_str(&format!("{:>8} {:>8} {:>6}  {:<20}  {}\n", p.pid, p.ppid, p.uid, p.started, p.command));
    }
    out
}

/// `ctl wait`: `{"id": ..., "exitStatus": ...}`, as runsc prints it.
pub fn wait_json(id: &str, status: wire::ExitStatus) -> String {
    serde_json::json!({ "id": id, "exitStatus": status.code() }).to_string()
}
