//! cgroup v2's device rules: an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE`, attached to
//! the container's cgroup, that answers every device access (open, mknod) of its processes.
//!
//! Written by hand: cgroups-rs does not police devices on v2, and the crates that load eBPF
//! (aya, libbpf-rs) load compiled ELF objects, not a program generated at run time from a
//! container's rules; the program is a few instructions per rule.
//!
//! Semantics are the v1 devices controller's, as runc gives them: rules apply in order, the
//! last rule that matches an access decides, and an access no rule matches is denied. A rule
//! matches when its type (or `a`) matches, every requested access (`r`, `w`, `m`) is among
//! its own, and its major and minor (or wildcards) match.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

// `struct bpf_cgroup_dev_ctx`: access_type = (access << 16) | type, then major, minor.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// One eBPF instruction, as the kernel reads it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | dst, off, imm }
}

// Opcodes used here.
const LDX_MEM_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const ALU32_AND_K: u8 = 0x54; // dst &= imm (32 bit)
const ALU32_RSH_K: u8 = 0x74; // dst >>= imm (32 bit)
const ALU32_MOV_X: u8 = 0xbc; // dst = src (32 bit)
const ALU64_MOV_K: u8 = 0xb7; // dst = imm
const JMP_JNE_K: u8 = 0x55; // if dst != imm: pc += off
const JMP_EXIT: u8 = 0x95;

/// The program for `rules`: a prologue that loads the access into registers 2–5, one block per
/// rule from the last to the first (each returning its verdict when it matches), then deny.
fn program(rules: &[LinuxDeviceCgroup]) -> Vec<Insn> {
    let mut prog = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU32_AND_K, 2, 0, 0, 0xffff), // r2 = type
        insn(LDX_MEM_W, 3, 1, 0, 0),
        insn(ALU32_RSH_K, 3, 0, 0, 16), // r3 = access
        insn(LDX_MEM_W, 4, 1, 4, 0),    // r4 = major
        insn(LDX_MEM_W, 5, 1, 8, 0),    // r5 = minor
    ];
    for rule in rules.iter().rev() {
        let block = rule_block(rule);
        let unconditional = block.len() == 2;
        prog.extend(block);
        // A rule that matches everything decides everything left: the verifier refuses code
        // that cannot be reached.
        if unconditional {
            return prog;
        }
    }
    prog.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    prog.push(insn(JMP_EXIT, 0, 0, 0, 0));
    prog
}

/// The block of one rule: tests that jump past the block when the access does not match, then
/// the verdict. `None` for a rule that can match nothing (a type no device has).
fn rule_block(rule: &LinuxDeviceCgroup) -> Vec<Insn> {
    // Each test: (instructions, of which the last is the jump out).
    let mut tests: Vec<Vec<Insn>> = Vec::new();
    match rule.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => {}
        LinuxDeviceType::B => tests.push(vec![insn(JMP_JNE_K, 2, 0, 0, DEV_BLOCK)]),
        LinuxDeviceType::C | LinuxDeviceType::U => tests.push(vec![insn(JMP_JNE_K, 2, 0, 0, DEV_CHAR)]),
        // FIFOs are not devices: the kernel never asks about them.
        LinuxDeviceType::P => return Vec::new(),
    }
    let access = rule.access().as_deref().unwrap_or("rwm");
    let mask = access.chars().fold(0, |m, c| {
        m | match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        }
    });
    if mask != ACC_READ | ACC_WRITE | ACC_MKNOD {
        // Every requested access must be among the rule's: (access & mask) == access.
        tests.push(vec![
            insn(ALU32_MOV_X, 1, 3, 0, 0),
            insn(ALU32_AND_K, 1, 0, 0, mask),
            insn(0x5d, 1, 3, 0, 0), // JNE_X: if r1 != r3 jump
        ]);
    }
    // A number beyond i32 names no device (the kernel's majors have 12 bits, minors 20):
    // compared as i32::MAX, which no device has either, so the rule keeps matching nothing.
    if let Some(major) = rule.major().filter(|m| *m >= 0) {
        tests.push(vec![insn(JMP_JNE_K, 4, 0, 0, i32::try_from(major).unwrap_or(i32::MAX))]);
    }
    if let Some(minor) = rule.minor().filter(|m| *m >= 0) {
        tests.push(vec![insn(JMP_JNE_K, 5, 0, 0, i32::try_from(minor).unwrap_or(i32::MAX))]);
    }
    let verdict = [insn(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow())), insn(JMP_EXIT, 0, 0, 0, 0)];
    let total: usize = tests.iter().map(Vec::len).sum::<usize>() + verdict.len();
    let mut block = Vec::with_capacity(total);
    for test in tests {
        block.extend(test);
        // The jump lands just past the block.
        let remaining = total - block.len();
        #[expect(clippy::cast_possible_truncation, reason = "a rule's block is at most 8 instructions")]
        let offset = remaining as i16;
        block.last_mut().expect("a test has a jump").off = offset;
    }
    block.extend(verdict);
    block
}

fn bpf(cmd: libc::c_long, attr: &mut [u8]) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a zero-filled `union bpf_attr` prefix of the size given, laid out for
    // `cmd`; the kernel reads (and for queries writes) only within it.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A `bpf(2)` command that returns a new descriptor, which the caller then owns.
fn bpf_fd(cmd: libc::c_long, attr: &mut [u8]) -> std::io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)?;
    let fd = RawFd::try_from(fd).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the command returned a new descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The `u32` a `bpf_attr` length field takes.
fn attr_len(len: usize) -> std::io::Result<u32> {
    u32::try_from(len).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "device filter too long"))
}

fn put_u32(attr: &mut [u8], offset: usize, value: u32) {
    attr[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
}

fn put_u64(attr: &mut [u8], offset: usize, value: u64) {
    attr[offset..offset + 8].copy_from_slice(&value.to_ne_bytes());
}

/// Loads the program for `rules`. Without a verifier log first (a log too small for a long
/// program would itself fail the load); if the kernel refuses, again with one, for the error.
fn load(rules: &[LinuxDeviceCgroup]) -> std::io::Result<OwnedFd> {
    let prog = program(rules);
    let license = c"Apache-2.0";
    let try_load = |log: Option<&mut [u8]>| {
        let mut attr = [0u8; 128];
        put_u32(&mut attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE);
        put_u32(&mut attr, 4, attr_len(prog.len())?);
        put_u64(&mut attr, 8, prog.as_ptr() as u64);
        put_u64(&mut attr, 16, license.as_ptr() as u64);
        if let Some(log) = log {
            put_u32(&mut attr, 24, 1); // log_level
            put_u32(&mut attr, 28, attr_len(log.len())?);
            put_u64(&mut attr, 32, log.as_mut_ptr() as u64);
        }
        bpf_fd(BPF_PROG_LOAD, &mut attr)
    };
    try_load(None).or_else(|e| {
        let mut log = vec![0u8; 1 << 20];
        let retried = try_load(Some(&mut log));
        let end = log.iter().position(|b| *b == 0).unwrap_or(0);
        let verifier = String::from_utf8_lossy(&log[..end]).trim().to_string();
        retried.map_err(|_| std::io::Error::new(e.kind(), format!("loading the device filter: {e}: {verifier}")))
    })
}

/// The ids of the device programs attached to `cgroup`.
fn attached(cgroup: BorrowedFd<'_>) -> std::io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = [0u8; 40];
    put_u32(&mut attr, 0, cgroup.as_raw_fd() as u32);
    put_u32(&mut attr, 4, BPF_CGROUP_DEVICE);
    put_u64(&mut attr, 16, ids.as_mut_ptr() as u64);
    put_u32(&mut attr, 24, attr_len(ids.len())?);
    bpf(BPF_PROG_QUERY, &mut attr)?;
    let count = usize::try_from(u32::from_ne_bytes(attr[24..28].try_into().expect("4 bytes"))).unwrap_or(usize::MAX);
    ids.truncate(count.min(ids.len()));
    Ok(ids)
}

fn attach_or_detach(cmd: libc::c_long, cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> std::io::Result<()> {
    let mut attr = [0u8; 20];
    put_u32(&mut attr, 0, cgroup.as_raw_fd() as u32);
    put_u32(&mut attr, 4, prog.as_raw_fd() as u32);
    put_u32(&mut attr, 8, BPF_CGROUP_DEVICE);
    if cmd == BPF_PROG_ATTACH {
        put_u32(&mut attr, 12, BPF_F_ALLOW_MULTI);
    }
    bpf(cmd, &mut attr).map(drop)
}

/// Makes `rules` the device rules of the cgroup v2 directory `cgroup`: the new program is
/// attached first and the ones it replaces detached after, so no access slips through between.
pub fn apply(cgroup: BorrowedFd<'_>, rules: &[LinuxDeviceCgroup]) -> std::io::Result<()> {
    let before = attached(cgroup)?;
    let prog = load(rules)?;
    attach_or_detach(BPF_PROG_ATTACH, cgroup, prog.as_fd())?;
    for id in before {
        let mut attr = [0u8; 12];
        put_u32(&mut attr, 0, id);
        let Ok(old) = bpf_fd(BPF_PROG_GET_FD_BY_ID, &mut attr) else { continue };
        attach_or_detach(BPF_PROG_DETACH, cgroup, old.as_fd())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    fn rule(
        allow: bool,
        typ: LinuxDeviceType,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default().allow(allow).typ(typ).access(access);
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().unwrap()
    }

    #[test]
    fn every_jump_lands_past_its_block() {
        let block = rule_block(&rule(true, LinuxDeviceType::C, Some(1), Some(3), "rw"));
        // type, access (3), major, minor, verdict (2).
        assert_eq!(block.len(), 8);
        for (i, insn) in block.iter().enumerate() {
            if insn.code == JMP_JNE_K || insn.code == 0x5d {
                assert_eq!(i + 1 + insn.off as usize, block.len(), "jump at {i}");
            }
        }
        assert!(rule_block(&rule(true, LinuxDeviceType::P, None, None, "rwm")).is_empty());
    }

    /// Runs `script` in a fresh cgroup v2 directory whose device rules are `rules`; returns
    /// its exit code. Needs root and a cgroup2 mount (pure v2, or the hybrid's `unified`).
    fn run_under(rules: &[LinuxDeviceCgroup], script: &str) -> i32 {
        let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .find(|p| std::path::Path::new(p).join("cgroup.procs").exists() && is_cgroup2(p))
            .expect("no cgroup2 mount");
        let dir = std::path::Path::new(root).join(format!("pdk-devfilter-{}-{}", std::process::id(), script.len()));
        std::fs::create_dir(&dir).unwrap();
        let mut child =
            Command::new("/bin/sh").args(["-c", &format!("read go; {script}")]).stdin(Stdio::piped()).spawn().unwrap();
        std::fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
        let cg = std::fs::File::open(&dir).unwrap();
        apply(cg.as_fd(), rules).unwrap();
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let code = child.wait().unwrap().code().unwrap();
        std::fs::remove_dir(&dir).unwrap();
        code
    }

    fn is_cgroup2(path: &str) -> bool {
        nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
    }

    #[test]
    fn the_filter_allows_and_denies_as_the_rules_say_in_the_kernel() {
        if !nix::unistd::Uid::effective().is_root() {
            panic!("this test needs root (it loads an eBPF program into the kernel)");
        }
        // runc's shape: deny everything, then allow /dev/null (c 1:3) and reading /dev/zero (c 1:5).
        let rules = [
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(5), "r"),
        ];
        let script = "echo x > /dev/null || exit 3; \
                      head -c1 /dev/zero > /dev/null || exit 4; \
                      (echo x > /dev/zero) 2>/dev/null && exit 5; \
                      (head -c1 /dev/urandom > /dev/null) 2>/dev/null && exit 6; exit 0";
        assert_eq!(run_under(&rules, script), 0);
        // Later rules win: a deny after the allow takes /dev/null away again.
        let mut later = rules.to_vec();
        later.push(rule(false, LinuxDeviceType::C, Some(1), None, "w"));
        assert_eq!(run_under(&later, "(echo x > /dev/null) 2>/dev/null && exit 7; exit 0"), 0);
    }
}
