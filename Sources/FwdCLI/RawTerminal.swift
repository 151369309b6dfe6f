import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The terminal as a full-screen view uses it (`fwd top`): raw input (no echo, no line editing, Ctrl-C as a
/// byte), the alternate screen, a hidden cursor. `leave` puts everything back; so do SIGTERM, SIGHUP and the
/// crash signals (SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGABRT, SIGFPE), whose handlers restore the saved termios
/// and the main screen with async-signal-safe calls only, then die of the signal as before.
///
/// fwd keeps this small layer of its own instead of a terminal library: none that is kept up fits Swift on
/// Linux without pulling in ncurses or a large UI framework, and what `fwd top` needs is a few escape
/// sequences, one termios switch and a window size (docs/architecture.md, "fwd top").
enum RawTerminal {
    static let enterScreen = "\u{1b}[?1049h\u{1b}[?25l\u{1b}[H\u{1b}[2J"
    static let leaveScreen = "\u{1b}[0m\u{1b}[?25h\u{1b}[?1049l"

    /// The size of the terminal on `fd` (columns, rows), or nil when it is not one.
    static func size(_ fd: Int32 = STDOUT_FILENO) -> (columns: Int, rows: Int)? {
        var size = winsize()
        guard ioctl(fd, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0, size.ws_row > 0 else { return nil }
        return (Int(size.ws_col), Int(size.ws_row))
    }

    /// Switches to raw mode and the alternate screen; false (and nothing changed) when stdin is no terminal.
    static func enter() -> Bool {
        guard tcgetattr(STDIN_FILENO, &rawTerminalSaved) == 0 else { return false }
        var raw = rawTerminalSaved
        raw.c_lflag &= ~tcflag_t(ECHO | ICANON | ISIG | IEXTEN)
        raw.c_iflag &= ~tcflag_t(IXON | ICRNL | BRKINT | INPCK | ISTRIP)
        withUnsafeMutableBytes(of: &raw.c_cc) { cc in
            cc[Int(VMIN)] = 1
            cc[Int(VTIME)] = 0
        }
        guard tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) == 0 else { return false }
        rawTerminalActive = 1
        for sig in [SIGTERM, SIGHUP] { install(sig, rawTerminalQuit) }
        for sig in [SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGABRT, SIGFPE] { install(sig, rawTerminalCrash) }
        write(enterScreen)
        return true
    }

    /// Back to the terminal as it was. Safe to call twice.
    static func leave() {
        guard rawTerminalActive == 1 else { return }
        rawTerminalRestore()
    }

    static func write(_ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeMutableBytes { terminalWrite($0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR || errno == EAGAIN { continue }; return }
            offset += n
        }
        bytes.removeAll()
    }

    private static func install(_ sig: Int32, _ handler: @escaping @convention(c) (Int32) -> Void) {
        _ = signal(sig, handler)
    }
}

// Signal handlers can touch only globals, and only with async-signal-safe calls (tcsetattr, write, raise, _exit).
nonisolated(unsafe) private var rawTerminalSaved = termios()
nonisolated(unsafe) private var rawTerminalActive: Int32 = 0

private func rawTerminalRestore() {
    rawTerminalActive = 0
    _ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &rawTerminalSaved)
    // A static byte sequence: no allocation in a signal handler.
    let leave: StaticString = "\u{1b}[0m\u{1b}[?25h\u{1b}[?1049l"
    _ = terminalWrite(leave.utf8Start, leave.utf8CodeUnitCount)
}

/// At file scope, where `write` is the C function.
private func terminalWrite(_ bytes: UnsafeRawPointer?, _ count: Int) -> Int { write(STDOUT_FILENO, bytes, count) }

private func rawTerminalQuit(_ sig: Int32) {
    if rawTerminalActive == 1 { rawTerminalRestore() }
    _exit(128 + sig)
}

private func rawTerminalCrash(_ sig: Int32) {
    if rawTerminalActive == 1 { rawTerminalRestore() }
    // Die of the signal as without the handler (a crash report, a core where allowed).
    _ = signal(sig, SIG_DFL)
    raise(sig)
}
