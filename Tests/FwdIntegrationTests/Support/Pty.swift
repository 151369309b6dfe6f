import Foundation
@testable import FwdCore
#if canImport(Glibc)
import Glibc
#endif

/// A pseudo-terminal for tests that type at a prompt as a person would: the test writes keystrokes to the
/// master side and reads what the terminal shows; the code under test opens `slavePath`.
final class Pty: @unchecked Sendable {
    let master: Int32
    let slavePath: String
    /// Held open so the terminal's settings can be read before and after, and the master never sees EIO.
    let slave: Int32
    private let lock = NSLock()
    private var shown: [UInt8] = []

    init() throws {
        master = Self.posixOpenpt(O_RDWR | O_NOCTTY)
        guard master >= 0, Self.grantpt(master) == 0, Self.unlockpt(master) == 0, let name = Self.ptsname(master) else {
            throw ChildProcessError(description: "cannot open a pty: \(String(cString: strerror(errno)))")
        }
        slavePath = String(cString: name)
        slave = open(slavePath, O_RDWR | O_NOCTTY)
        guard slave >= 0 else { throw ChildProcessError(description: "cannot open \(slavePath)") }
        _ = fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK)
    }

    // Glibc declares these only under _XOPEN_SOURCE, which the Swift Glibc module does not set.
    private typealias FdCall = @convention(c) (Int32) -> Int32
    private static let posixOpenpt = unsafeBitCast(dlsym(nil, "posix_openpt"), to: FdCall.self)
    private static let grantpt = unsafeBitCast(dlsym(nil, "grantpt"), to: FdCall.self)
    private static let unlockpt = unsafeBitCast(dlsym(nil, "unlockpt"), to: FdCall.self)
    private static let ptsname = unsafeBitCast(dlsym(nil, "ptsname"), to: (@convention(c) (Int32) -> UnsafeMutablePointer<CChar>?).self)

    deinit {
        close(slave)
        close(master)
    }

    /// Types `text` (use "\r" for Enter, "\u{3}" for Ctrl-C).
    func type(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { write(master, $0.baseAddress, $0.count) }
    }

    /// Everything the terminal has shown so far.
    var screen: String {
        drain()
        return lock.withLock { String(decoding: shown, as: UTF8.self) }
    }

    /// Waits until the screen contains `text`.
    @discardableResult
    func waitFor(_ text: String, timeout: Double = 5) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if screen.contains(text) { return true }
            usleep(10_000)
        }
        return false
    }

    private func drain() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(master, &buffer, buffer.count)
            guard n > 0 else { return }
            lock.withLock { shown += buffer[0..<n] }
        }
    }

    /// The terminal's settings, for checking they are restored.
    var settings: [UInt64] {
        var t = termios()
        tcgetattr(slave, &t)
        let cc = withUnsafeBytes(of: t.c_cc) { $0.map { UInt64($0) } }
        return [UInt64(t.c_iflag), UInt64(t.c_oflag), UInt64(t.c_cflag), UInt64(t.c_lflag)] + cc
    }
}
