import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The supervisor's control socket (client side) and the lock that makes it the only one per state directory.
package enum Control {
    static func lockPath(_ paths: FwdPaths) -> String { paths.stateDirectory + "/supervisor.lock" }
    static func spawnLockPath(_ paths: FwdPaths) -> String { paths.stateDirectory + "/spawn.lock" }

    /// Takes the supervisor lock for the life of the supervisor: a second supervisor for the same state
    /// directory fails here, however many start at once. A supervisor that is stopping (its socket already
    /// gone, so it answers no ping) still holds the lock for a moment: that one is waited for.
    package static func acquireSupervisorLock(_ paths: FwdPaths) throws -> Int32 {
        try FileSystem.makePrivateDirectory(paths.stateDirectory)
        let fd = open(lockPath(paths), O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileSystemError.failed(path: lockPath(paths), action: "open", errno: errno) }
        var waited = 0
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if let pid = runningPID(paths) {
                close(fd)
                throw ControlError.alreadyRunning(pid: pid)
            }
            guard waited < 100 else {
                close(fd)
                throw ControlError.alreadyRunning(pid: nil)
            }
            // Rare (a stop and a start within milliseconds) and short: the old supervisor is past its last write.
            usleep(50_000)
            waited += 1
        }
        return fd
    }

    /// Sends one request and waits for its reply; a failure reply is thrown as `ControlError.refused`.
    @discardableResult
    package static func request(_ request: ControlRequest, paths: FwdPaths, timeout: Double = 30) throws -> ControlReply {
        let connection = try ControlClient(paths: paths)
        try connection.send(request)
        return try connection.reply(timeout: timeout)
    }

    /// The pid of the running supervisor, or nil.
    package static func runningPID(_ paths: FwdPaths) -> Int32? {
        guard case .ok(let pid)? = try? request(ControlRequest(op: .ping), paths: paths, timeout: 2) else { return nil }
        return pid
    }

    /// Starts `fwd daemon --on-demand` in the background unless a supervisor answers, and returns once it
    /// serves: the new supervisor says so on a pipe, so nothing polls. Callers serialise on a spawn lock so
    /// twenty concurrent `fwd up` start exactly one; the daemon detaches into its own session so it outlives
    /// the terminal and this process.
    package static func ensureSupervisor(_ paths: FwdPaths, executable: String, environment: [String: String]) throws {
        try startSupervisor(paths, executable: executable, environment: environment)?.waitUntilReady()
    }

    /// Starts a supervisor when none runs and returns without waiting for it, so the caller can do its own
    /// work (`fwd up` writes what it wants) while the supervisor starts; nil when one already runs. Until
    /// `waitUntilReady` returns, no other `fwd` starts a second one.
    package static func startSupervisor(_ paths: FwdPaths, executable: String, environment: [String: String]) throws -> SupervisorStart? {
        if runningPID(paths) != nil { return nil }
        try FileSystem.makePrivateDirectory(paths.stateDirectory)
        try FileSystem.makePrivateDirectory(paths.logDirectory)
        let lock = open(spawnLockPath(paths), O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0 else { throw FileSystemError.failed(path: spawnLockPath(paths), action: "open", errno: errno) }
        flock(lock, LOCK_EX)
        if runningPID(paths) != nil {
            close(lock)
            return nil
        }
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else {
            close(lock)
            throw ControlError.failed("cannot create a pipe: \(String(cString: strerror(errno)))")
        }
        defer { close(ends[1]) }
        do {
            let child = try ChildProcess([executable, "daemon", "--on-demand", "--ready-fd", "3"], outputPath: paths.logDirectory + "/daemon.log",
                                         environment: environment, placement: .detached, passing: ends[1])
            return SupervisorStart(child: child, readyPipe: ends[0], lock: lock, logDirectory: paths.logDirectory)
        } catch {
            close(ends[0])
            close(lock)
            throw error
        }
    }

}

/// One connection to the supervisor, for the CLI: a request, then reply lines read with a deadline.
package final class ControlClient {
    private let socket: Descriptor
    private var buffer: [UInt8] = []

    package init(paths: FwdPaths) throws {
        do {
            socket = try UnixSocket.connect(path: paths.supervisorSocket)
        } catch {
            throw ControlError.notRunning
        }
    }

    package func send(_ request: ControlRequest) throws {
        try sendLine(Control.line(request))
    }

    /// An answer to a prompt, on the connection it came on. Safe to call from another thread than the reader's.
    package func send(_ answer: PromptAnswer) throws {
        var data = Control.line(answer)
        defer { data.resetBytes(in: 0..<data.count) }
        try sendLine(data)
    }

    private func sendLine(_ data: Data) throws {
        guard data.withUnsafeBytes({ Posix.sendAll(socket.raw, $0) }) else { throw ControlError.notRunning }
    }

    /// Ends the connection from this side, also for a thread blocked in `next` (which then returns nil): a view
    /// that replaces its streams (`fwd top`) leaves nothing subscribed behind.
    package func hangUp() { _ = shutdown(socket.raw, Int32(SHUT_RDWR)) }

    /// The first reply; a failure reply is thrown.
    package func reply(timeout: Double) throws -> ControlReply {
        guard let reply = try next(timeout: timeout) else {
            throw ControlError.failed("the supervisor closed the connection without an answer; `fwd logs` may say why")
        }
        if case .failed(let failure) = reply { throw ControlError.refused(failure) }
        return reply
    }

    /// The next line from the supervisor: nil when it closed the connection; throws when nothing complete
    /// arrives within `timeout` seconds (nil: wait for as long as it takes).
    package func next(timeout: Double?) throws -> ControlReply? {
        let deadline = timeout.map { ContinuousClock.now + .seconds($0) }
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Data(buffer[..<newline])
                buffer.removeSubrange(...newline)
                guard let reply = try? JSONDecoder().decode(ControlReply.self, from: line) else {
                    throw ControlError.failed("the supervisor's answer could not be read; is it the same version of fwd? `fwd daemon --stop` ends it")
                }
                return reply
            }
            switch Reactor.waitBlocking(socket.raw, for: .read, until: deadline) {
            case .ready: break
            case .timedOut:
                throw ControlError.failed("the supervisor did not answer within \(Int((timeout ?? 0).rounded(.up))) s; `fwd logs` may say why")
            case .cancelled, .closed, .failed: return nil
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = recv(socket.raw, &chunk, chunk.count, 0)
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            guard n > 0 else { return nil }
            buffer.append(contentsOf: chunk.prefix(n))
        }
    }
}


/// A supervisor that is starting: `waitUntilReady` returns once its control socket serves.
package final class SupervisorStart {
    private let child: ChildProcess
    private let readyPipe: Int32
    private let lock: Int32
    private let logDirectory: String
    private var finished = false

    init(child: ChildProcess, readyPipe: Int32, lock: Int32, logDirectory: String) {
        self.child = child
        self.readyPipe = readyPipe
        self.lock = lock
        self.logDirectory = logDirectory
    }

    /// The daemon writes "ready" once its control socket serves; end of file before that means it exited.
    package func waitUntilReady() throws {
        guard !finished else { return }
        defer { release() }
        var poller = pollfd(fd: readyPipe, events: Int16(POLLIN), revents: 0)
        var line = [UInt8](repeating: 0, count: 64)
        guard poll(&poller, 1, 10_000) > 0 else {
            throw ControlError.failed("the fwd supervisor did not start within 10 s; see \(logDirectory)/daemon.log")
        }
        let n = read(readyPipe, &line, line.count)
        if n > 0 && String(decoding: line.prefix(max(0, n)), as: UTF8.self).hasPrefix("ready") { return }
        _ = child.waitExit(timeout: 2)
        let tail = (FileSystem.read(logDirectory + "/daemon.log") ?? "").split(separator: "\n").suffix(5).joined(separator: "\n")
        throw ControlError.failed("the fwd supervisor exited at start:\n\(tail)")
    }

    private func release() {
        guard !finished else { return }
        finished = true
        close(readyPipe)
        flock(lock, LOCK_UN)
        close(lock)
    }

    deinit { release() }
}
