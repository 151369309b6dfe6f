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

/// A pseudo-terminal with a program on its other side, as a person at a terminal would run it: the test
/// types into the primary side and reads what the program draws. The child is killed and the pty closed by
/// `with`, even when the test throws.
final class PseudoTerminal {
    let primary: Int32
    let child: ChildProcess
    /// Everything the program wrote so far.
    private var bytes: [UInt8] = []
    /// Where the output ends now; pass it to `read(since:)` to look only at what comes after.
    var mark: Int { bytes.count }

    private init(_ argv: [String], environment: [String: String]) throws {
        primary = posixOpenpt(O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard primary >= 0 else { throw ChildProcessError(description: "posix_openpt: \(String(cString: strerror(errno)))") }
        var name = [CChar](repeating: 0, count: 128)
        // grantpt is a no-op on Linux's devpts.
        guard unlockpt(primary) == 0, ptsnameR(primary, &name, name.count) == 0 else {
            close(primary)
            throw ChildProcessError(description: "cannot set up the pseudo-terminal: \(String(cString: strerror(errno)))")
        }
        // A real size: shells lay out completion lists by the terminal's width.
        var size = winsize(ws_row: 24, ws_col: 100, ws_xpixel: 0, ws_ypixel: 0)
        _ = ioctl(primary, UInt(TIOCSWINSZ), &size)
        do {
            child = try ChildProcess(argv, environment: environment, placement: .controllingTerminal(String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)))
        } catch {
            close(primary)
            throw error
        }
    }

    static func with<T>(_ argv: [String], environment: [String: String], _ body: (PseudoTerminal) throws -> T) throws -> T {
        let terminal = try PseudoTerminal(argv, environment: environment)
        defer {
            terminal.child.kill()
            close(terminal.primary)
        }
        return try body(terminal)
    }

    func type(_ text: String) {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(primary, $0.baseAddress! + offset, bytes.count - offset) }
            if n <= 0 { return }
            offset += n
        }
    }

    /// Reads until `done` holds for what was drawn since `mark` (escape sequences removed), or `timeout` passes.
    /// Returns that text either way, so a failed expectation shows what the program printed.
    @discardableResult
    func read(since mark: Int, timeout: Double = 10, until done: (String) -> Bool) -> String {
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let text = Self.plain(String(decoding: bytes[mark...], as: UTF8.self))
            if done(text) || Date() >= deadline { return text }
            var fds = pollfd(fd: primary, events: Int16(POLLIN), revents: 0)
            guard poll(&fds, 1, 100) > 0 else { continue }
            let n = Glibc.read(primary, &buffer, buffer.count)
            // EIO: the program closed its side (it exited).
            if n <= 0 { return text }
            bytes += buffer[0..<n]
        }
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
