//! Captures a sandbox's stdout and stderr (one pipe) per invocation.
//!
//! A background thread (the sandbox's keeper thread, see `sandbox.rs`) reads the pipe as data
//! arrives. When an invocation ends, [`LogCapture::take`]
//! first drains whatever is still in the pipe — the runtime wrote it before it posted its
//! response — so every line lands in the invocation that printed it. Both readers take the same
//! lock around their non-blocking reads, so output is never reordered.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// How long the reader lets output accumulate in the pipe before reading it.
const BATCH: std::time::Duration = std::time::Duration::from_millis(5);

/// Most log bytes kept per invocation; beyond it the oldest output is dropped.
pub const MAX_LOG_BYTES: usize = 64 * 1024;

#[derive(Default)]
struct Buffer {
    data: Vec<u8>,
    dropped: usize,
    eof: bool,
}

impl Buffer {
    fn push(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        if self.data.len() > MAX_LOG_BYTES {
            let excess = self.data.len() - MAX_LOG_BYTES;
            self.data.drain(..excess);
            self.dropped += excess;
        }
    }

    fn take(&mut self) -> String {
        let mut text = String::new();
        if self.dropped > 0 {
            text.push_str(&format!(
                "[... {} bytes of earlier output dropped ...]\n",
                self.dropped
            ));
        }
        text.push_str(&String::from_utf8_lossy(&self.data));
        self.data.clear();
        self.dropped = 0;
        text
    }
}

/// The read end of a sandbox's output pipe.
#[derive(Clone)]
pub struct LogCapture {
    fd: Arc<OwnedFd>,
    buffer: Arc<Mutex<Buffer>>,
}

/// Reads everything available now; returns false at end of file.
fn drain(fd: &OwnedFd, buffer: &mut Buffer) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match nix::unistd::read(fd.as_fd(), &mut chunk) {
            Ok(0) => {
                buffer.eof = true;
                return false;
            }
            Ok(n) => buffer.push(&chunk[..n]),
            Err(Errno::EINTR) => {}
            Err(_) => return true,
        }
    }
}

impl LogCapture {
    /// Captures from `read_end` (made non-blocking here); someone must call [`LogCapture::run`].
    pub fn new(read_end: OwnedFd) -> std::io::Result<Self> {
        let flags = fcntl(&read_end, FcntlArg::F_GETFL)?;
        fcntl(
            &read_end,
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        )?;
        Ok(Self {
            fd: Arc::new(read_end),
            buffer: Arc::default(),
        })
    }

    /// Reads the pipe as output arrives, until every writer has closed it.
    pub fn run(self) {
        loop {
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return,
            }
            // Batch: a sandbox that prints on every invocation would otherwise wake this thread
            // (and cost its writer a wake-up) each time. An invocation's own output is drained by
            // `take` when it ends, so this delay never delays or loses a log line.
            std::thread::sleep(BATCH);
            let Ok(mut buffer) = self.buffer.lock() else {
                return;
            };
            if !drain(&self.fd, &mut buffer) {
                return;
            }
        }
    }

    /// Everything printed since the last call.
    pub fn take(&self) -> String {
        match self.buffer.lock() {
            Ok(mut buffer) => {
                if !buffer.eof {
                    drain(&self.fd, &mut buffer);
                }
                buffer.take()
            }
            Err(_) => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn output_written_before_take_is_in_the_take() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        let capture = LogCapture::new(reader.into()).unwrap();
        let background = capture.clone();
        std::thread::spawn(move || background.run());
        for i in 0..100 {
            writeln!(writer, "line {i}").unwrap();
            // No yielding: the background task may not have run; take() must still see it.
            let got = capture.take();
            assert!(got.ends_with(&format!("line {i}\n")), "{i}: {got:?}");
        }
        assert_eq!(capture.take(), "");
    }

    #[test]
    fn the_buffer_keeps_the_newest_output() {
        let mut b = Buffer::default();
        b.push(&vec![b'a'; MAX_LOG_BYTES]);
        b.push(b"tail");
        let text = b.take();
        assert!(text.starts_with("[... 4 bytes of earlier output dropped ...]\n"));
        assert!(text.ends_with("tail"));
        assert_eq!(b.take(), "");
    }
}
