//! Random Nomad task names for property tests.
//!
//! Nomad's `Task.Validate` (nomad/structs/structs.go) refuses only `/` and `\` in a task name,
//! and a Go string cannot carry NUL into a path; it sets no length limit. The client then names
//! files after the task: the task dir `<alloc>/<task>` and logmon's fifos
//! `.<task>.stdout.fifo` (client/allocrunner/taskrunner/logmon_hook.go), so on a FreeBSD client
//! (NAME_MAX 255) a task name is at most 255 - 13 = 242 bytes.

/// The longest task name (bytes) a Nomad client on FreeBSD can run.
pub const MAX_TASK_NAME: usize = 255 - ".".len() - ".stdout.fifo".len();

/// xorshift64*, so that a failing case is reproduced from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A task name Nomad accepts: characters that mean something to a shell, to fstab, to
    /// jail(8) (`.`), to pot.conf (`=`, `"`) and to /etc/hosts (`#`, blanks), non-ASCII text,
    /// and every so often a name of the greatest length.
    pub fn task_name(&mut self) -> String {
        const PIECES: &[&str] = &[
            " ", "\t", ".", "..", "\"", "'", "#", "$", "$(id)", ":", "=", "-", "_", "\n", "*", "ü",
            "日本", "web", "v2", "x", "0",
        ];
        let long = self.below(5) == 0;
        let want = if long {
            MAX_TASK_NAME
        } else {
            1 + self.below(24)
        };
        let mut name = String::new();
        loop {
            let piece = PIECES[self.below(PIECES.len())];
            if name.len() + piece.len() > want {
                break;
            }
            name.push_str(piece);
        }
        while name.len() < want {
            name.push('x');
        }
        // `.` and `..` are not a directory of their own.
        if name.chars().all(|c| c == '.') {
            name.push('x');
        }
        name
    }
}
