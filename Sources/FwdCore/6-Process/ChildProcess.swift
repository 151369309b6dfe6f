#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// How a child ended.
package enum ChildExit: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    package var description: String {
        switch self {
        case .exited(let code): "exit status \(code)"
        case .signaled(let sig): "killed by signal \(sig)"
        }
    }
}

package struct ChildProcessError: Error, CustomStringConvertible {
    package var description: String
}

// Top-level so `kill()` methods don't shadow the libc function.
@discardableResult
package func sendSignal(_ pid: pid_t, _ sig: Int32) -> Int32 {
    kill(pid, sig)
}

#if canImport(Glibc)
// glibc ≥ 2.34 has it, but the Swift Glibc module doesn't import it.
private let addCloseFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
    guard let sym = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return nil }
    return unsafeBitCast(sym, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
}()
#endif

#if canImport(Glibc)
// glibc ≥ 2.36 has pidfd_open (Linux ≥ 5.3); looked up at run time like addclosefrom_np.
private let pidfdOpen: (@convention(c) (pid_t, UInt32) -> Int32)? = {
    guard let sym = dlsym(nil, "pidfd_open") else { return nil }
    return unsafeBitCast(sym, to: (@convention(c) (pid_t, UInt32) -> Int32).self)
}()
#endif

/// A child started with posix_spawn: its own process group, default signal
/// dispositions, no inherited fds beyond stdio. Lives until killed or reaped,
/// independent of any Swift scope (unlike Subprocess/Foundation.Process).
package final class ChildProcess: @unchecked Sendable {
    package let pid: pid_t
    package let argv: [String]
    private let lock = NSLock()
    private var exit: ChildExit?

    /// Pass as `outputPath` to let the child write to this process's stdout and stderr.
    package static let inheritOutput = "-"

    /// Where the child runs relative to this process and its terminal.
    package enum Placement: Sendable {
        /// Its own process group, stdin from /dev/null: signals to our group (Ctrl-C) do not reach it.
        case background
        /// A session of its own (setsid): it outlives this process and the terminal, as the supervisor must.
        case detached
        /// Our terminal and process group, all three standard streams inherited: an editor.
        case terminal
        /// A session of its own whose controlling terminal is `path` (a pseudo-terminal's secondary side),
        /// on all three standard streams: an interactive shell that a test types into.
        case controllingTerminal(String)
    }

    /// Spawns `argv` (argv[0] searched in PATH unless it contains a slash).
    /// stdin is /dev/null and stdout+stderr go to `outputPath` (appended) or /dev/null, except with `.terminal`,
    /// which inherits all three, and `.controllingTerminal`, which puts that terminal on all three.
    /// `passing` is a descriptor the child gets as its fd 3 (a pipe to report on), the only one beyond stdio.
    package init(_ argv: [String], outputPath: String? = nil, environment: [String: String]? = nil,
                placement: Placement = .background, passing: Int32? = nil) throws {
        precondition(!argv.isEmpty, "argv must not be empty")
        self.argv = argv

        #if canImport(Darwin)
        var actions: posix_spawn_file_actions_t? = nil
        var attr: posix_spawnattr_t? = nil
        #else
        var actions = posix_spawn_file_actions_t()
        var attr = posix_spawnattr_t()
        #endif
        posix_spawn_file_actions_init(&actions)
        posix_spawnattr_init(&attr)
        defer {
            posix_spawn_file_actions_destroy(&actions)
            posix_spawnattr_destroy(&attr)
        }

        switch placement {
        case .terminal:
            break
        case .controllingTerminal(let path):
            // Opened after setsid, so on Linux it becomes the new session's controlling terminal.
            posix_spawn_file_actions_addopen(&actions, 0, path, O_RDWR, 0)
            posix_spawn_file_actions_adddup2(&actions, 0, 1)
            posix_spawn_file_actions_adddup2(&actions, 0, 2)
        case .background, .detached:
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
            if outputPath != Self.inheritOutput {
                posix_spawn_file_actions_addopen(&actions, 1, outputPath ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0o600)
                posix_spawn_file_actions_adddup2(&actions, 1, 2)
            }
        }

        #if canImport(Darwin)
        let setsid: Int32 = 0x400  // POSIX_SPAWN_SETSID
        #else
        let setsid: Int32 = 0x80  // POSIX_SPAWN_SETSID (glibc), not imported into Swift
        #endif
        var flags = Int32(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)
        switch placement {
        case .background: flags |= Int32(POSIX_SPAWN_SETPGROUP)
        case .detached, .controllingTerminal: flags |= setsid
        case .terminal: break
        }
        #if canImport(Darwin)
        flags |= Int32(POSIX_SPAWN_CLOEXEC_DEFAULT)
        // dup2 in the file actions clears close-on-exec for the copy, so fd 3 survives CLOEXEC_DEFAULT.
        if let passing { posix_spawn_file_actions_adddup2(&actions, passing, 3) }
        #else
        // Keeps stray non-CLOEXEC fds of this process out of long-lived children like sshd.
        if let passing { posix_spawn_file_actions_adddup2(&actions, passing, 3) }
        if let addCloseFrom { _ = addCloseFrom(&actions, passing == nil ? 3 : 4) }
        #endif
        posix_spawnattr_setflags(&attr, Int16(flags))
        posix_spawnattr_setpgroup(&attr, 0)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attr, &mask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGPIPE] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attr, &defaults)

        let env = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnv = env.map { strdup($0) } + [nil]
        defer {
            cArgv.forEach { free($0) }
            cEnv.forEach { free($0) }
        }

        var child: pid_t = 0
        let rc = posix_spawnp(&child, argv[0], &actions, &attr, cArgv, cEnv)
        guard rc == 0 else {
            throw ChildProcessError(description: "cannot start \(argv[0]): \(String(cString: strerror(rc)))")
        }
        pid = child
    }

    /// Runs a short command to completion and returns its exit and combined output.
    package static func run(_ argv: [String], timeout: Double = 30) throws -> (exit: ChildExit, output: String) {
        let out = FileManager.default.temporaryDirectory
            .appendingPathComponent("fwd-child-\(UUID().uuidString).out").path
        defer { unlink(out) }
        let child = try ChildProcess(argv, outputPath: out)
        guard let exit = child.waitExit(timeout: timeout) else {
            child.kill()
            throw ChildProcessError(description: "\(argv.joined(separator: " ")) did not finish within \(timeout) s")
        }
        let output = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        return (exit, output)
    }

    /// The exit once reaped; nil while running.
    package var exitStatus: ChildExit? {
        lock.lock()
        defer { lock.unlock() }
        return reapLocked()
    }

    package var isRunning: Bool { exitStatus == nil }

    package func terminate() { signal(SIGTERM) }

    /// SIGKILL and reap.
    package func kill() {
        signal(SIGKILL)
        _ = waitExit(timeout: 5)
    }

    package func signal(_ sig: Int32) {
        lock.lock()
        defer { lock.unlock() }
        // Never signal a reaped pid: it may already belong to someone else.
        if reapLocked() == nil { sendSignal(pid, sig) }
    }

    /// Waits until the child exits; nil if still running after `timeout` seconds. On Linux the wait is a
    /// poll on a pidfd, which becomes readable when the process ends: no sleep loop.
    @discardableResult
    package func waitExit(timeout: Double) -> ChildExit? {
        let deadline = Date().addingTimeInterval(timeout)
        #if canImport(Glibc)
        if let pidfdOpen, case let fd = pidfdOpen(pid, 0), fd >= 0 {
            defer { close(fd) }
            while true {
                if let exit = exitStatus { return exit }
                let left = deadline.timeIntervalSinceNow
                if left <= 0 { return nil }
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                _ = poll(&poller, 1, Int32(min(left * 1000, 86_400_000).rounded(.up)))
            }
        }
        #endif
        while true {
            if let exit = exitStatus { return exit }
            if Date() >= deadline { return nil }
            usleep(10_000)
        }
    }

    private func reapLocked() -> ChildExit? {
        if let exit { return exit }
        var status: Int32 = 0
        let rc = waitpid(pid, &status, WNOHANG)
        if rc == pid {
            // WIFEXITED/WEXITSTATUS are macros Swift can't import.
            exit = (status & 0x7f) == 0 ? .exited((status >> 8) & 0xff) : .signaled(status & 0x7f)
        } else if rc == -1 && errno == ECHILD {
            exit = .signaled(0) // reaped elsewhere; nothing more we can learn
        }
        return exit
    }
}
