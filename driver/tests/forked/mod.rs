//! Running a check in a forked child: to see what a `fork` inherits, and to drop root privileges
//! for permission tests (CI runs as root, whose CAP_DAC_OVERRIDE opens a mode-000 file, so without
//! this the permission path would never run there). No simulator needed: the board build's
//! hardware-free tests use it too.
#![allow(dead_code)]

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

/// The unprivileged user and group permission tests run as when the tests run as root: `nobody`.
pub const NOBODY: u32 = 65534;

/// Runs `check` in a forked child and returns its verdict: `Err` with the child's message when it
/// failed or panicked.
///
/// The child runs only `check` and then `_exit`s, never returning into the test harness. The
/// process is multi-threaded (other tests run), so `check` should stay simple: glibc keeps the
/// allocator usable after `fork`, and nothing here takes a lock another test thread could hold.
pub fn in_child(check: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into the array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both were just created and are owned by nobody else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: see the function's doc: the child runs `check` and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        drop(read_end);
        let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check))
            .unwrap_or_else(|_| Err("the check panicked".into()));
        let code = match verdict {
            Ok(()) => 0,
            Err(msg) => {
                let mut f = std::fs::File::from(write_end);
                let _ = std::io::Write::write_all(&mut f, msg.as_bytes());
                1
            }
        };
        // SAFETY: ends the child without running the parent's atexit handlers or destructors.
        unsafe { libc::_exit(code) };
    }
    drop(write_end);
    let mut msg = String::new();
    std::fs::File::from(read_end)
        .read_to_string(&mut msg)
        .expect("the child's message");
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    match (libc::WIFEXITED(status), libc::WEXITSTATUS(status)) {
        (true, 0) => Ok(()),
        (true, _) => Err(msg),
        _ => Err(format!(
            "the child ended abnormally (wait status {status:#x})"
        )),
    }
}

/// Runs `check` as an unprivileged user: in this process when the tests do not run as root;
/// as root, in a forked child that first drops every group and becomes uid and gid [`NOBODY`].
/// `tree` (a temp dir, created 0700) is opened to others (0755) so the child can walk into it;
/// the files below keep their modes. Panics with the check's message when it fails.
pub fn as_unprivileged(tree: &Path, check: impl FnOnce() -> Result<(), String>) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return check().unwrap_or_else(|msg| panic!("{msg}"));
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tree, std::fs::Permissions::from_mode(0o755)).unwrap();
    let verdict = in_child(|| {
        // SAFETY: plain credential syscalls in the single-threaded child.
        let dropped = unsafe {
            libc::setgroups(0, std::ptr::null()) == 0
                && libc::setresgid(NOBODY, NOBODY, NOBODY) == 0
                && libc::setresuid(NOBODY, NOBODY, NOBODY) == 0
        };
        // SAFETY: as above.
        if !dropped || unsafe { libc::geteuid() } != NOBODY {
            return Err(format!(
                "could not drop to uid {NOBODY}: {}",
                std::io::Error::last_os_error()
            ));
        }
        check()
    });
    verdict.unwrap_or_else(|msg| panic!("as uid {NOBODY}: {msg}"));
}
