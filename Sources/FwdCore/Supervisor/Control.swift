import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A request to the running supervisor over its control socket: one JSON object per line each way.
public struct ControlRequest: Codable, Sendable {
    public enum Op: String, Codable, Sendable { case ping, reconcile, check, stop, reconnect }
    public var op: Op
    public var config: String?
    public var names: [String]?

    public init(op: Op, config: String? = nil, names: [String]? = nil) {
        self.op = op
        self.config = config
        self.names = names
    }
}

public struct ControlReply: Codable, Sendable {
    public var ok: Bool
    public var pid: Int32
    public var error: String?
    /// What was done, one line per host (`reconnect`).
    public var lines: [String]?

    public init(ok: Bool, pid: Int32 = getpid(), error: String? = nil, lines: [String]? = nil) {
        self.ok = ok
        self.pid = pid
        self.error = error
        self.lines = lines
    }
}

public enum ControlError: Error, CustomStringConvertible {
    case notRunning
    case alreadyRunning(pid: Int32?)
    case failed(String)

    public var description: String {
        switch self {
        case .notRunning: return "no fwd supervisor is running for this state directory; `fwd up NAME` starts one"
        case .alreadyRunning(let pid):
            return "a fwd supervisor\(pid.map { " (pid \($0))" } ?? "") already runs for this state directory; use `fwd up`/`fwd down`, or stop it with `fwd daemon --stop`"
        case .failed(let message): return message
        }
    }
}

/// The supervisor's control socket and the lock that makes it the only one per state directory.
public enum Control {
    static func lockPath(_ paths: FwdPaths) -> String { paths.stateDirectory + "/supervisor.lock" }
    static func spawnLockPath(_ paths: FwdPaths) -> String { paths.stateDirectory + "/spawn.lock" }

    /// Takes the supervisor lock for the life of the process (the descriptor is never closed): a second
    /// supervisor for the same state directory fails here, however many start at once.
    public static func acquireSupervisorLock(_ paths: FwdPaths) throws -> Int32 {
        try FileSystem.makePrivateDirectory(paths.stateDirectory)
        let fd = open(lockPath(paths), O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileSystemError.failed(path: lockPath(paths), action: "open", errno: errno) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw ControlError.alreadyRunning(pid: (try? request(ControlRequest(op: .ping), paths: paths, timeout: 1))?.pid)
        }
        return fd
    }

    /// Sends one request and waits for its reply.
    public static func request(_ request: ControlRequest, paths: FwdPaths, timeout: Double = 30) throws -> ControlReply {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM_VALUE), 0)
        guard fd >= 0 else { throw ControlError.failed("cannot create a socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard connectUnix(fd, paths.supervisorSocket) else { throw ControlError.notRunning }
        var tv = timeval()
        tv.tv_sec = Int(timeout)
        tv.tv_usec = .init((timeout - Double(Int(timeout))) * 1_000_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let line = try JSONEncoder().encode(request) + Data("\n".utf8)
        guard writeAll(fd, line) else { throw ControlError.notRunning }
        guard let reply = readLine(fd), let decoded = try? JSONDecoder().decode(ControlReply.self, from: reply) else {
            throw ControlError.failed("the supervisor did not answer within \(Int(timeout)) s; `fwd logs` may say why")
        }
        return decoded
    }

    /// The pid of the running supervisor, or nil.
    public static func runningPID(_ paths: FwdPaths) -> Int32? {
        (try? request(ControlRequest(op: .ping), paths: paths, timeout: 2))?.pid
    }

    /// Starts `fwd daemon` in the background unless a supervisor answers. Callers serialise on a spawn lock so
    /// twenty concurrent `fwd up` start exactly one; the daemon detaches into its own session so it outlives
    /// the terminal and this process.
    public static func ensureSupervisor(_ paths: FwdPaths, executable: String, environment: [String: String]) throws {
        if runningPID(paths) != nil { return }
        try FileSystem.makePrivateDirectory(paths.stateDirectory)
        try FileSystem.makePrivateDirectory(paths.logDirectory)
        let fd = open(spawnLockPath(paths), O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileSystemError.failed(path: spawnLockPath(paths), action: "open", errno: errno) }
        defer { close(fd) }
        flock(fd, LOCK_EX)
        defer { flock(fd, LOCK_UN) }
        if runningPID(paths) != nil { return }
        let child = try ChildProcess([executable, "daemon"], outputPath: paths.logDirectory + "/daemon.log",
                                     environment: environment, placement: .detached)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if runningPID(paths) != nil { return }
            if child.exitStatus != nil {
                let tail = (FileSystem.read(paths.logDirectory + "/daemon.log") ?? "").split(separator: "\n").suffix(5).joined(separator: "\n")
                throw ControlError.failed("the fwd supervisor exited at start:\n\(tail)")
            }
            // A cold `fwd up` waits here for the supervisor it just started: poll finely, it is on the clock.
            usleep(1_000)
        }
        throw ControlError.failed("the fwd supervisor did not start within 10 s; see \(paths.logDirectory)/daemon.log")
    }

    static func connectUnix(_ fd: Int32, _ path: String) -> Bool {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
    }

    static func writeAll(_ fd: Int32, _ data: Data) -> Bool {
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL_VALUE))
                if n < 0 { if errno == EINTR { continue }; return false }
                offset += n
            }
            return true
        }
    }

    static func readLine(_ fd: Int32, limit: Int = 1 << 20) -> Data? {
        var data = Data()
        var byte: UInt8 = 0
        while data.count < limit {
            let n = recv(fd, &byte, 1, 0)
            if n < 0 && errno == EINTR { continue }
            guard n == 1 else { return data.isEmpty ? nil : data }
            if byte == UInt8(ascii: "\n") { return data }
            data.append(byte)
        }
        return nil
    }
}

#if canImport(Glibc)
let SOCK_STREAM_VALUE = Int32(SOCK_STREAM.rawValue)
let MSG_NOSIGNAL_VALUE = Int32(MSG_NOSIGNAL)
#else
let SOCK_STREAM_VALUE = SOCK_STREAM
let MSG_NOSIGNAL_VALUE: Int32 = 0
#endif

/// Serves the control socket on a thread of its own; each request is handed to `handler` and answered.
public final class ControlServer: @unchecked Sendable {
    private let fd: Int32
    private let path: String
    private let stopped = NSLock()
    private var isStopped = false

    public init(paths: FwdPaths, handler: @escaping @Sendable (ControlRequest) async -> ControlReply) throws {
        path = paths.supervisorSocket
        try FileSystem.makeOwnedDirectory(paths.controlDirectory)
        // Only a process holding the supervisor lock gets here, so an existing socket file is stale.
        unlink(path)
        fd = socket(AF_UNIX, SOCK_STREAM_VALUE, 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, chmod(path, 0o600) == 0, listen(fd, 64) == 0 else {
            let code = errno
            close(fd)
            throw FileSystemError.failed(path: path, action: "listen on", errno: code)
        }
        let thread = Thread { [fd] in
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 {
                    if errno == EINTR { continue }
                    return
                }
                Task {
                    defer { close(client) }
                    guard let line = Control.readLine(client),
                          let request = try? JSONDecoder().decode(ControlRequest.self, from: line) else { return }
                    let reply = await handler(request)
                    if let data = try? JSONEncoder().encode(reply) { _ = Control.writeAll(client, data + Data("\n".utf8)) }
                }
            }
        }
        thread.start()
    }

    public func stop() {
        stopped.lock()
        defer { stopped.unlock() }
        guard !isStopped else { return }
        isStopped = true
        unlink(path)
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }
}
