import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A request to the running supervisor over its control socket: one JSON object on one line. The supervisor
/// answers with one `ControlReply` line, then, for `watch` and `follow`, one line per change until either
/// side closes.
package struct ControlRequest: Codable, Sendable, Equatable {
    package enum Op: String, Codable, Sendable {
        case ping, reconcile, check, stop
        /// Reconcile, then stream the named tunnels' rows: now, and after each change (`fwd up`, `fwd down`).
        case watch
        /// Stream events with an id above `after` (of `names[0]` only, when given): `fwd logs -f`.
        case follow
        /// Check the masters of the named tunnels (all when nil) now; restart those whose path is gone.
        case reconnect
    }

    package var op: Op
    package var config: String?
    package var names: [String]?
    package var after: Int64?
    /// For `watch`: the client can ask its user at a terminal (stdin and /dev/tty are one). Login questions of
    /// the named tunnels' hosts then come on this connection as `ControlReply.prompt`, answered with a
    /// `PromptAnswer` line.
    package var prompt: Bool?

    package init(op: Op, config: String? = nil, names: [String]? = nil, after: Int64? = nil, prompt: Bool? = nil) {
        self.op = op
        self.config = config
        self.names = names
        self.after = after
        self.prompt = prompt
    }
}

/// A client's answer to a `ControlReply.prompt`, one line on the watch connection. It goes to the relay of the
/// master that asked, and nowhere else: never stored, logged or echoed back.
package struct PromptAnswer: Codable, Sendable {
    package var id: Int
    /// nil with `cancel` (Ctrl-C at the prompt) or `unable` (the terminal could not be used after all).
    package var answer: String?
    package var cancel: Bool?
    package var unable: Bool?

    package init(id: Int, answer: String? = nil, cancel: Bool? = nil, unable: Bool? = nil) {
        self.id = id
        self.answer = answer
        self.cancel = cancel
        self.unable = unable
    }
}

/// Why the supervisor could not do what was asked; the CLI words it.
package enum ControlFailure: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    /// The config did not load; the message names file, line and column.
    case config(String)
    /// The state database refused a read or a write.
    case store(String)
    /// The request was not one JSON object on one line.
    case malformed(String)
    /// The request line was longer than the limit (bytes).
    case tooLarge(limit: Int)
    /// No complete request arrived within the read timeout (seconds).
    case timedOut(seconds: Int)
    /// The supervisor is stopping and takes no new work.
    case stopping

    package var description: String {
        switch self {
        case .config(let message): return message
        case .store(let message): return "the supervisor cannot use the state database: \(message)"
        case .malformed(let why): return "the supervisor could not read the request (\(why)); is this fwd the same version as the running supervisor? `fwd daemon --stop` restarts it on the next `fwd up`"
        case .tooLarge(let limit): return "the request is larger than the supervisor's limit of \(limit) bytes"
        case .timedOut(let seconds): return "no complete request arrived within \(seconds) s"
        case .stopping: return "the supervisor is stopping; run the command again"
        }
    }
}

package struct ControlReply: Codable, Sendable {
    package var ok: Bool
    package var pid: Int32
    package var error: ControlFailure?
    /// For `watch`: a tunnel's row.
    package var tunnel: TunnelStatus?
    /// For `follow`: an event.
    package var event: Event?
    /// For `reconnect`: what was done, one line per host.
    package var lines: [String]?
    /// For `watch` with `prompt`: a login question to ask the user.
    package var prompt: LoginQuestion?
    /// For `watch` with `prompt`: the question with this id needs no answer any more (its ssh exited).
    package var withdrawn: Int?

    package init(ok: Bool, pid: Int32 = getpid(), error: ControlFailure? = nil, tunnel: TunnelStatus? = nil, event: Event? = nil,
                lines: [String]? = nil, prompt: LoginQuestion? = nil, withdrawn: Int? = nil) {
        self.ok = ok
        self.pid = pid
        self.error = error
        self.tunnel = tunnel
        self.event = event
        self.lines = lines
        self.prompt = prompt
        self.withdrawn = withdrawn
    }
}

package enum ControlError: Error, CustomStringConvertible {
    case notRunning
    case alreadyRunning(pid: Int32?)
    /// The supervisor answered with a failure.
    case refused(ControlFailure)
    case failed(String)

    package var description: String {
        switch self {
        case .notRunning: return "no fwd supervisor is running for this state directory; `fwd up NAME` starts one"
        case .alreadyRunning(let pid):
            return "a fwd supervisor\(pid.map { " (pid \($0))" } ?? "") already runs for this state directory; use `fwd up`/`fwd down`, or stop it with `fwd daemon --stop`"
        case .refused(let failure): return failure.description
        case .failed(let message): return message
        }
    }
}

/// The supervisor's control socket (client side) and the lock that makes it the only one per state directory.
package enum Control {
    /// The longest request line the supervisor reads, and how long it waits for one.
    static let requestLimit = 64 * 1024
    static let requestTimeout = 5.0
    /// A client that reads nothing while this much of its stream is waiting is dropped.
    static let replyBacklogLimit = 4 << 20

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
        (try? request(ControlRequest(op: .ping), paths: paths, timeout: 2))?.pid
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

    static func unixAddress(_ path: String) -> sockaddr_un? {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        return addr
    }

    static func connectUnix(_ fd: Int32, _ path: String) -> Bool {
        guard var addr = unixAddress(path) else { return false }
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
        }
    }

    static func line<T: Encodable>(_ value: T) -> Data {
        ((try? JSONEncoder().encode(value)) ?? Data("{}".utf8)) + Data("\n".utf8)
    }
}

/// One connection to the supervisor, for the CLI: a request, then reply lines read with a deadline.
package final class ControlClient {
    private let fd: Int32
    private var buffer: [UInt8] = []

    package init(paths: FwdPaths) throws {
        fd = socket(AF_UNIX, SOCK_STREAM_VALUE, 0)
        guard fd >= 0 else { throw ControlError.failed("cannot create a socket: \(String(cString: strerror(errno)))") }
        guard Control.connectUnix(fd, paths.supervisorSocket) else {
            close(fd)
            throw ControlError.notRunning
        }
    }

    deinit { close(fd) }

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
        let sent = data.withUnsafeBytes { raw -> Bool in
            var offset = 0
            while offset < raw.count {
                let n = socketSend(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 { if errno == EINTR { continue }; return false }
                offset += n
            }
            return true
        }
        guard sent else { throw ControlError.notRunning }
    }

    /// The first reply; a failure reply is thrown.
    package func reply(timeout: Double) throws -> ControlReply {
        guard let reply = try next(timeout: timeout) else {
            throw ControlError.failed("the supervisor closed the connection without an answer; `fwd logs` may say why")
        }
        if let failure = reply.error { throw ControlError.refused(failure) }
        guard reply.ok else { throw ControlError.failed("the supervisor refused the request") }
        return reply
    }

    /// The next line from the supervisor: nil when it closed the connection; throws when nothing complete
    /// arrives within `timeout` seconds (nil: wait for as long as it takes).
    package func next(timeout: Double?) throws -> ControlReply? {
        let deadline = timeout.map { Date().addingTimeInterval($0) } ?? .distantFuture
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Data(buffer[..<newline])
                buffer.removeSubrange(...newline)
                guard let reply = try? JSONDecoder().decode(ControlReply.self, from: line) else {
                    throw ControlError.failed("the supervisor's answer could not be read; is it the same version of fwd? `fwd daemon --stop` ends it")
                }
                return reply
            }
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else {
                throw ControlError.failed("the supervisor did not answer within \(Int((timeout ?? 0).rounded(.up))) s; `fwd logs` may say why")
            }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(min(left * 1000, Double(Int32.max)).rounded(.up)))
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = recv(fd, &chunk, chunk.count, 0)
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            guard n > 0 else { return nil }
            buffer.append(contentsOf: chunk.prefix(n))
        }
    }
}

/// send(2) without SIGPIPE, under a name that methods called `send` do not shadow.
private func socketSend(_ fd: Int32, _ pointer: UnsafeRawPointer, _ count: Int) -> Int {
    send(fd, pointer, count, Int32(MSG_NOSIGNAL_VALUE))
}

#if canImport(Glibc)
let SOCK_STREAM_VALUE = Int32(SOCK_STREAM.rawValue)
let MSG_NOSIGNAL_VALUE = Int32(MSG_NOSIGNAL)
#else
let SOCK_STREAM_VALUE = SOCK_STREAM
let MSG_NOSIGNAL_VALUE: Int32 = 0
#endif

/// Serves the control socket without a thread or a blocking call per client: every descriptor is
/// non-blocking and driven by Dispatch sources. A request line has a size limit and a read timeout, and a
/// client that stops reading its stream is dropped, so a silent or slow client never holds up another client
/// or any tunnel.
final class ControlServer: @unchecked Sendable {
    typealias Handler = @Sendable (ControlRequest, ControlConnection) async -> Void

    private let fd: Int32
    private let path: String
    private let source: DispatchSourceRead
    private let lock = NSLock()
    private var isStopped = false

    init(paths: FwdPaths, handler: @escaping Handler) throws {
        path = paths.supervisorSocket
        try FileSystem.makeOwnedDirectory(paths.controlDirectory)
        // Only a process holding the supervisor lock gets here, so an existing socket file is stale.
        unlink(path)
        let fd = socket(AF_UNIX, SOCK_STREAM_VALUE, 0)
        guard fd >= 0, var addr = Control.unixAddress(path) else {
            if fd >= 0 { close(fd) }
            throw FileSystemError.failed(path: path, action: "listen on", errno: fd < 0 ? errno : ENAMETOOLONG)
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, chmod(path, 0o600) == 0, listen(fd, 128) == 0, ControlConnection.makeNonBlocking(fd) else {
            let code = errno
            close(fd)
            throw FileSystemError.failed(path: path, action: "listen on", errno: code)
        }
        self.fd = fd
        source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: DispatchQueue(label: "fwd.control.accept"))
        source.setEventHandler {
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 {
                    if errno == EINTR || errno == ECONNABORTED { continue }
                    return  // EAGAIN: all accepted; anything else: try again on the next event
                }
                ControlConnection.start(client, handler: handler)
            }
        }
        source.setCancelHandler { close(fd) }
        source.resume()
    }

    /// Stops taking connections; the ones already open finish what they are doing.
    func stop() {
        lock.lock()
        defer { lock.unlock() }
        guard !isStopped else { return }
        isStopped = true
        unlink(path)
        source.cancel()
    }
}

/// One client of the control server, driven on a serial queue of its own.
final class ControlConnection: @unchecked Sendable {
    private let fd: Int32
    private let queue: DispatchQueue
    private let reader: DispatchSourceRead
    private var writer: DispatchSourceWrite?
    private var timer: DispatchSourceTimer?
    private var input: [UInt8] = []
    private var output: [UInt8] = []
    private var gotRequest = false
    private var closed = false
    private var closeHandlers: [@Sendable () -> Void] = []
    private var closeAfterWrite = false
    private let handler: ControlServer.Handler
    /// Lines after the request (prompt answers), each within the request's size limit; kept until a handler is set.
    private var lineHandler: (@Sendable (Data) -> Void)?
    private var laterLines: [Data] = []

    static func makeNonBlocking(_ fd: Int32) -> Bool {
        let flags = fcntl(fd, F_GETFL)
        return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 && fcntl(fd, F_SETFD, FD_CLOEXEC) == 0
    }

    static func start(_ fd: Int32, handler: @escaping ControlServer.Handler) {
        guard makeNonBlocking(fd) else {
            close(fd)
            return
        }
        let connection = ControlConnection(fd, handler: handler)
        connection.queue.async { connection.begin() }
    }

    private init(_ fd: Int32, handler: @escaping ControlServer.Handler) {
        self.fd = fd
        self.handler = handler
        queue = DispatchQueue(label: "fwd.control.client")
        reader = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
    }

    private func begin() {
        reader.setEventHandler { [self] in readAvailable() }
        reader.resume()
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + Control.requestTimeout)
        timer.setEventHandler { [self] in
            if !gotRequest { fail(.timedOut(seconds: Int(Control.requestTimeout))) }
        }
        timer.resume()
        self.timer = timer
    }

    /// Queues one reply line. Returns false once the connection is closed (the client went away or was
    /// dropped for not reading).
    @discardableResult
    func send(_ reply: ControlReply) -> Bool {
        queue.sync {
            guard !closed else { return false }
            output.append(contentsOf: Control.line(reply))
            flush()
            if output.count > Control.replyBacklogLimit { shut() }
            return !closed
        }
    }

    /// Sends the last reply and closes once it is written.
    func finish(_ reply: ControlReply) {
        queue.async { [self] in
            guard !closed else { return }
            output.append(contentsOf: Control.line(reply))
            closeAfterWrite = true
            flush()
        }
    }

    /// Sends the last reply and returns once it is written and the connection closed (or the client went away).
    func finishWritten(_ reply: ControlReply) async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            onClose { done.resume() }
            finish(reply)
        }
    }

    /// Hands every further line the client sends after its request to `body`, on the connection's queue (lines
    /// that arrived before are handed over at once).
    func onLine(_ body: @escaping @Sendable (Data) -> Void) {
        queue.async { [self] in
            lineHandler = body
            let lines = laterLines
            laterLines = []
            lines.forEach(body)
        }
    }

    /// Runs `body` when the connection closes (at once when it already has).
    func onClose(_ body: @escaping @Sendable () -> Void) {
        let now: Bool = queue.sync {
            if closed { return true }
            closeHandlers.append(body)
            return false
        }
        if now { body() }
    }

    private func readAvailable() {
        var chunk = [UInt8](repeating: 0, count: 16384)
        while !closed {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return }
                shut()
                return
            }
            if n == 0 {
                // The client closed its end: a request without its newline is still read.
                if !gotRequest && !input.isEmpty { take(Data(input)) }
                shut()
                return
            }
            input.append(contentsOf: chunk.prefix(n))
            for i in 0..<n { chunk[i] = 0 }
            if !gotRequest {
                if let newline = input.firstIndex(of: UInt8(ascii: "\n")) {
                    take(Data(input[..<newline]))
                    input.removeSubrange(...newline)
                } else if input.count > Control.requestLimit {
                    fail(.tooLarge(limit: Control.requestLimit))
                    continue
                }
            }
            if gotRequest { takeLaterLines() }
        }
    }

    /// Lines after the request; one longer than the limit ends the connection.
    private func takeLaterLines() {
        while let newline = input.firstIndex(of: UInt8(ascii: "\n")) {
            let line = Data(input[..<newline])
            for i in input.startIndex...newline { input[i] = 0 }
            input.removeSubrange(...newline)
            if let lineHandler { lineHandler(line) } else { laterLines.append(line) }
        }
        if input.count > Control.requestLimit { shut() }
    }

    private func take(_ line: Data) {
        gotRequest = true
        timer?.cancel()
        guard line.count <= Control.requestLimit else {
            fail(.tooLarge(limit: Control.requestLimit))
            return
        }
        let request: ControlRequest
        do {
            request = try JSONDecoder().decode(ControlRequest.self, from: line)
        } catch {
            fail(.malformed("not a fwd request: \(String(describing: error).prefix(200))"))
            return
        }
        let handler = self.handler
        Task { await handler(request, self) }
    }

    private func fail(_ failure: ControlFailure) {
        gotRequest = true
        output.append(contentsOf: Control.line(ControlReply(ok: false, error: failure)))
        closeAfterWrite = true
        flush()
    }

    /// Writes what it can without blocking; the rest waits for the socket to drain.
    private func flush() {
        while !output.isEmpty && !closed {
            let n = output.withUnsafeBytes { socketSend(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    if writer == nil {
                        // The write source watches a duplicate of its own, closed once the source is done with
                        // it. On Linux, libdispatch keeps one epoll note per descriptor for its read and write
                        // sources, and a write source added and removed beside a live read source on the same
                        // descriptor can corrupt that note (swift-corelibs-libdispatch#833). The supervisor died
                        // once in libdispatch's "Source finalized twice" check under 20 concurrent clients.
                        let watched = fcntl(fd, F_DUPFD_CLOEXEC, 0)
                        guard watched >= 0 else {
                            shut()
                            return
                        }
                        let w = DispatchSource.makeWriteSource(fileDescriptor: watched, queue: queue)
                        w.setEventHandler { [self] in flush() }
                        w.setCancelHandler { close(watched) }
                        w.resume()
                        writer = w
                    }
                    return
                }
                shut()
                return
            }
            output.removeFirst(n)
        }
        if output.isEmpty {
            writer?.setEventHandler(handler: nil)
            writer?.cancel()
            writer = nil
            if closeAfterWrite { shut() }
        }
    }

    private func shut() {
        guard !closed else { return }
        closed = true
        lineHandler = nil
        laterLines = []
        timer?.cancel()
        writer?.setEventHandler(handler: nil)
        writer?.cancel()
        writer = nil
        let fd = self.fd
        reader.setCancelHandler { close(fd) }
        reader.cancel()
        // The sources' handlers hold this connection; dropping them ends the cycle.
        reader.setEventHandler(handler: nil)
        timer?.setEventHandler(handler: nil)
        let handlers = closeHandlers
        closeHandlers = []
        for body in handlers { DispatchQueue.global().async(execute: body) }
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
