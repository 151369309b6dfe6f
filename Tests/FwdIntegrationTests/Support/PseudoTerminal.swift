import Foundation
@testable import FwdCore
#if canImport(Glibc)
import Glibc
#endif

// glibc has these, but the Swift Glibc module does not import them (they need _XOPEN_SOURCE).
private func libc<T>(_ name: String, as type: T.Type) -> T {
    guard let symbol = dlsym(nil, name) else { fatalError("glibc has no \(name)") }
    return unsafeBitCast(symbol, to: type)
}
private let posixOpenpt = libc("posix_openpt", as: (@convention(c) (Int32) -> Int32).self)
private let unlockpt = libc("unlockpt", as: (@convention(c) (Int32) -> Int32).self)
private let ptsnameR = libc("ptsname_r", as: (@convention(c) (Int32, UnsafeMutablePointer<CChar>, Int) -> Int32).self)

/// A pseudo-terminal for tests that type as a person at a terminal would: the test types into the primary
/// side and reads what the terminal shows. Either the code under test opens `path` itself (`init()`, e.g. the
/// terminal prompter), or a program runs on it as its controlling terminal (`with`, e.g. `fwd up` or a shell).
final class PseudoTerminal: @unchecked Sendable {
    let primary: Int32
    /// The terminal's device, /dev/pts/N.
    let path: String
    /// Held open by `init()` so the terminal's settings can be read before and after, and the primary never
    /// sees EIO; `with` holds none, so the program's exit shows as the end of its output.
    private let replica: Int32?
    /// The program `with` runs on the terminal (none on one made by `init()`).
    private(set) var child: ChildProcess!
    private let lock = NSLock()
    /// Everything the terminal has shown so far.
    private var bytes: [UInt8] = []

    /// A terminal with nothing on it yet: the code under test opens `path`.
    convenience init() throws {
        try self.init(holdingReplica: true)
    }

    private init(holdingReplica: Bool, columns: Int = 100) throws {
        primary = posixOpenpt(O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard primary >= 0 else { throw ChildProcessError(description: "posix_openpt: \(String(cString: strerror(errno)))") }
        var name = [CChar](repeating: 0, count: 128)
        // grantpt is a no-op on Linux's devpts.
        guard unlockpt(primary) == 0, ptsnameR(primary, &name, name.count) == 0 else {
            close(primary)
            throw ChildProcessError(description: "cannot set up the pseudo-terminal: \(String(cString: strerror(errno)))")
        }
        path = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // A real size: shells lay out completion lists by the terminal's width.
        var size = winsize(ws_row: 24, ws_col: UInt16(columns), ws_xpixel: 0, ws_ypixel: 0)
        _ = ioctl(primary, UInt(TIOCSWINSZ), &size)
        _ = fcntl(primary, F_SETFL, fcntl(primary, F_GETFL) | O_NONBLOCK)
        if holdingReplica {
            let fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC)
            guard fd >= 0 else {
                close(primary)
                throw ChildProcessError(description: "cannot open \(path)")
            }
            replica = fd
        } else {
            replica = nil
        }
    }

    deinit {
        if let replica { close(replica) }
        close(primary)
    }

    /// Runs `argv` with the terminal as its controlling terminal, then `body`; the program is killed and the
    /// terminal closed afterwards, even when `body` throws.
    static func with<T>(_ argv: [String], environment: [String: String], columns: Int = 100,
                        _ body: (PseudoTerminal) throws -> T) throws -> T {
        let terminal = try PseudoTerminal(holdingReplica: false, columns: columns)
        let child = try ChildProcess(argv, environment: environment, placement: .controllingTerminal(terminal.path))
        terminal.child = child
        defer { child.kill() }
        return try body(terminal)
    }

    /// Types `text` (use "\r" for Enter, "\u{3}" for Ctrl-C).
    func type(_ text: String) {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(primary, $0.baseAddress! + offset, bytes.count - offset) }
            if n <= 0 { return }
            offset += n
        }
    }

    /// Where the output ends now; pass it to `read(since:)` to look only at what comes after.
    var mark: Int { lock.withLock { bytes.count } }

    /// Everything the terminal has shown so far, as it was written (escape sequences and all).
    var screen: String { shown(since: 0, timeout: 0) { _ in true } }

    /// Waits until the screen contains `text`.
    @discardableResult
    func waitFor(_ text: String, timeout: Double = 5) -> Bool {
        shown(since: 0, timeout: timeout) { $0.contains(text) }.contains(text)
    }

    /// Reads until `done` holds for what was drawn since `mark` (escape sequences removed), or `timeout` passes.
    /// Returns that text either way, so a failed expectation shows what the program printed.
    @discardableResult
    func read(since mark: Int, timeout: Double = 10, until done: (String) -> Bool) -> String {
        Self.plain(shown(since: mark, timeout: timeout) { done(Self.plain($0)) })
    }

    /// What was shown since `mark`, once `done` holds for it, the program has closed its side, or `timeout`
    /// has passed.
    private func shown(since mark: Int, timeout: Double, until done: (String) -> Bool) -> String {
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            var open = true
            while true {
                let n = Glibc.read(primary, &buffer, buffer.count)
                if n > 0 {
                    lock.withLock { bytes += buffer[0..<n] }
                    continue
                }
                // EIO (or 0): the program closed its side (it exited). EAGAIN: nothing more for now.
                open = n < 0 && (errno == EAGAIN || errno == EINTR)
                break
            }
            let text = lock.withLock { String(decoding: bytes[mark...], as: UTF8.self) }
            let left = deadline.timeIntervalSinceNow
            if done(text) || !open || left <= 0 { return text }
            var entry = pollfd(fd: primary, events: Int16(POLLIN), revents: 0)
            _ = poll(&entry, 1, Int32(min(100, max(1, left * 1000))))
        }
    }

    /// The terminal's settings, for checking they are restored.
    var settings: [UInt64] {
        var t = termios()
        tcgetattr(replica ?? primary, &t)
        let cc = withUnsafeBytes(of: t.c_cc) { $0.map { UInt64($0) } }
        return [UInt64(t.c_iflag), UInt64(t.c_oflag), UInt64(t.c_cflag), UInt64(t.c_lflag)] + cc
    }

    /// The text without terminal control sequences. Colours and modes vanish (they can sit inside a word,
    /// e.g. a highlighted prefix); cursor moves, erases and carriage returns become a space, since what follows
    /// them is drawn elsewhere on the screen.
    static func plain(_ text: String) -> String {
        text.replacingOccurrences(of: "\u{1B}\\[[0-9;?<>=]*[ -/]*[mhl]", with: "", options: .regularExpression)
            .replacingOccurrences(of: "\u{1B}\\[[0-9;?<>=]*[ -/]*[@-~]", with: " ", options: .regularExpression)
            .replacingOccurrences(of: "\u{1B}\\][^\u{07}\u{1B}]*(\u{07}|\u{1B}\\\\)", with: "", options: .regularExpression)
            .replacingOccurrences(of: "\u{1B}[()][0-9A-Za-z]|\u{1B}[=>78M]", with: "", options: .regularExpression)
            .replacingOccurrences(of: "[\u{07}\u{08}]", with: "", options: .regularExpression)
            .replacingOccurrences(of: "\r", with: " ")
    }
}
