#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

package enum AskpassRelayError: Error, Equatable, CustomStringConvertible {
    case socketPathTooLong(String)
    case listen(path: String, errno: Int32)
    case unknownPrompt(Int)
    case invalidAnswer(String)

    package var description: String {
        switch self {
        case .socketPathTooLong(let path):
            "the askpass socket path \(path) is longer than \(UnixSocket.pathLimit) bytes — use a shorter state directory"
        case .listen(let path, let code):
            "cannot listen on the askpass socket \(path): \(String(cString: strerror(code)))"
        case .unknownPrompt(let id):
            "prompt \(id) is no longer waiting for an answer"
        case .invalidAnswer(let reason):
            "the answer cannot be passed to ssh: \(reason)"
        }
    }
}

/// The supervisor's end of the prompts of one ControlMaster. ssh runs `fwd askpass PROMPT` for every question
/// (`SSH_ASKPASS_REQUIRE=force`); that process connects here. The relay accepts it only from this user and only
/// from the master's ssh or a process below it, so an answer can never reach another tunnel's ssh, and hands the
/// question on as a `LoginPrompt`. The answer travels back over the same connection: it is never in argv, the
/// environment or a file. One relay per master run: create it before spawning, `attach` right after, `close`
/// after the master has exited (its thread holds it until then).
package final class AskpassRelay: @unchecked Sendable {
    package let socketPath: String
    package let events: AsyncStream<AskpassEvent>
    /// Add these to the master's environment. No secret: only where to ask.
    package let environment: [String: String]

    private struct Connection {
        var buffer: [UInt8] = []
        var prompt: Int?
        var peer: UnixSocket.Peer
    }

    private struct Master {
        var pid: Int32
        var cursor: LogCursor?
        var onCancel: @Sendable () -> Void
    }

    private let lock = NSLock()
    private let sink: AsyncStream<AskpassEvent>.Continuation
    private let listener: Int32
    private let wake: (read: Int32, write: Int32)
    private var connections: [Int32: Connection] = [:]
    private var open: [Int: Int32] = [:]
    private var master: Master?
    private var nextID = 1
    private var closed = false
    private var refused = 0
    private let loopDone = DispatchSemaphore(value: 0)

    /// Listens on a fresh socket in `directory` (created 0700 and owned by this user if missing; keep it short,
    /// e.g. the control directory). `askpassProgram` is the fwd executable (`/proc/self/exe`).
    package init(directory: String, askpassProgram: String) throws {
        try FileSystem.makeOwnedDirectory(directory)
        let path = "\(directory)/\(Self.socketPrefix)\(UUID().uuidString.prefix(8).lowercased())"
        guard path.utf8.count <= UnixSocket.pathLimit else { throw AskpassRelayError.socketPathTooLong(path) }
        socketPath = path
        environment = [
            "SSH_ASKPASS": askpassProgram,
            "SSH_ASKPASS_REQUIRE": "force",
            AskpassClient.socketVariable: path,
        ]
        let fd = socket(AF_UNIX, SOCK_STREAM_VALUE, 0)
        guard fd >= 0 else { throw AskpassRelayError.listen(path: path, errno: errno) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        // The umask makes the socket 0600 from the moment it exists; chmod repeats it for systems that ignore it.
        let oldMask = umask(0o177)
        let bound = UnixSocket.withAddress(path) { bind(fd, $0, $1) } ?? -1
        umask(oldMask)
        guard bound == 0, chmod(path, 0o600) == 0, listen(fd, 16) == 0 else {
            let code = errno
            closeDescriptor(fd)
            unlink(path)
            throw AskpassRelayError.listen(path: path, errno: code)
        }
        listener = fd
        var pipeFds: [Int32] = [0, 0]
        guard pipe(&pipeFds) == 0 else {
            let code = errno
            closeDescriptor(fd)
            unlink(path)
            throw AskpassRelayError.listen(path: path, errno: code)
        }
        for p in pipeFds { _ = fcntl(p, F_SETFD, FD_CLOEXEC) }
        wake = (pipeFds[0], pipeFds[1])
        (events, sink) = AsyncStream<AskpassEvent>.makeStream()
        let thread = Thread { [self] in self.serve() }
        thread.name = "fwd-askpass-relay"
        thread.start()
    }

    deinit { close() }

    /// Relay sockets in a directory start with this (a master's socket is named after its host).
    package static let socketPrefix = "ask-"

    /// Names the master once it is spawned: only its process tree may ask. `stderrLog` and `stderrOffset` are the
    /// master's stderr log and where this run starts (`ControlMaster.logPath`, `.logOffset`); each prompt carries
    /// what ssh wrote there since the previous one. `onCancel` must end the master (`ControlMaster.terminate`):
    /// ssh treats a failed askpass as an empty answer and would send an empty password, so a cancel ends ssh
    /// instead. Connections that arrive before `attach` wait for it.
    package func attach(masterPid: Int32, stderrLog: String? = nil, stderrOffset: UInt64 = 0,
                       onCancel: @escaping @Sendable () -> Void) {
        lock.withLock {
            master = Master(pid: masterPid, cursor: stderrLog.map { LogCursor(path: $0, offset: stderrOffset) }, onCancel: onCancel)
        }
        poke()
    }

    /// Sends `answer` to the ssh that asked `id`. It may not contain CR, LF or NUL (ssh cuts there) nor exceed
    /// 1023 bytes (ssh's limit).
    package func answer(_ id: Int, with answer: String) throws(AskpassRelayError) {
        if answer.contains(where: { $0 == "\n" || $0 == "\r" || $0 == "\0" }) {
            throw .invalidAnswer("it contains a line break or NUL")
        }
        guard answer.utf8.count <= AskpassWire.answerLimit else {
            throw .invalidAnswer("it is longer than \(AskpassWire.answerLimit) bytes")
        }
        lock.lock()
        defer { lock.unlock() }
        guard let fd = open.removeValue(forKey: id) else { throw .unknownPrompt(id) }
        var reply = AskpassWire.answerReply(answer)
        _ = UnixSocket.writeAll(fd, reply)
        for i in reply.indices { reply[i] = 0 }
    }

    /// Refuses prompt `id`: ends the master through `onCancel`, then tells the askpass to fail.
    package func cancel(_ id: Int) {
        let (fd, onCancel) = lock.withLock { (open.removeValue(forKey: id), master?.onCancel) }
        guard let fd else { return }
        onCancel?()
        // Only if that askpass is still connected: once it has gone, the loop may have reused its descriptor.
        lock.withLock { if connections[fd]?.prompt == id { _ = UnixSocket.writeAll(fd, AskpassWire.cancelReply) } }
    }

    /// Prompts waiting for an answer.
    package var openPrompts: [Int] { lock.withLock { open.keys.sorted() } }

    /// Connections turned away (another uid, or not the master's process tree).
    package var refusedConnections: Int { lock.withLock { refused } }

    /// Stops listening, withdraws every open prompt, ends `events`. Close it after the master has stopped: an
    /// askpass whose connection closes exits 1, which a live ssh reads as an empty answer.
    package func close() {
        let wasOpen = lock.withLock {
            guard !closed else { return false }
            closed = true
            return true
        }
        guard wasOpen else { return }
        poke()
        loopDone.wait()
    }

    private func poke() {
        var byte: UInt8 = 1
        _ = write(wake.write, &byte, 1)
    }

    private func serve() {
        defer { shutDown() }
        var scratch = [UInt8](repeating: 0, count: 4096)
        while true {
            var fds = [pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
            let (isClosed, watched) = lock.withLock { (closed, Array(connections.keys)) }
            if isClosed { return }
            fds += watched.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&fds, nfds_t(fds.count), -1)
            if ready < 0 {
                if errno == EINTR { continue }
                return
            }
            if fds[0].revents != 0 { _ = read(wake.read, &scratch, scratch.count) }
            if fds[1].revents & Int16(POLLIN) != 0 { accept() }
            for entry in fds.dropFirst(2) where entry.revents != 0 {
                let n = recv(entry.fd, &scratch, scratch.count, 0)
                if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
                received(entry.fd, n > 0 ? Array(scratch[0..<n]) : nil)
            }
            admitWaiting()
        }
    }

    private func accept() {
        let fd = acceptConnection(listener, nil, nil)
        guard fd >= 0 else { return }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        guard let peer = UnixSocket.peer(of: fd), peer.uid == geteuid() else {
            lock.withLock { refused += 1 }
            closeDescriptor(fd)
            return
        }
        lock.withLock { connections[fd] = Connection(peer: peer) }
    }

    /// Once the master is known: closes connections from outside its process tree and turns complete requests
    /// into prompts (a request can arrive before `attach`).
    private func admitWaiting() {
        var rejected: [Int32] = []
        var prompts: [AskpassEvent] = []
        lock.withLock {
            guard let master else { return }
            for (fd, connection) in connections where connection.prompt == nil {
                if !Self.isDescendant(connection.peer.pid, of: master.pid) {
                    connections[fd] = nil
                    refused += 1
                    rejected.append(fd)
                } else if let event = promoteLocked(fd) {
                    prompts.append(event)
                }
            }
        }
        for fd in rejected { closeDescriptor(fd) }
        for event in prompts { sink.yield(event) }
    }

    /// `bytes` nil means EOF or error: the askpass has gone.
    private func received(_ fd: Int32, _ bytes: [UInt8]?) {
        var event: AskpassEvent?
        var drop = false
        lock.withLock {
            guard var connection = connections[fd] else { return }
            guard let bytes else {
                if let id = connection.prompt, open.removeValue(forKey: id) != nil { event = .withdrawn(id) }
                connections[fd] = nil
                drop = true
                return
            }
            // One request per connection; anything after it is ignored.
            guard connection.prompt == nil else { return }
            connection.buffer += bytes
            if connection.buffer.count > AskpassWire.requestLimit
                || (AskpassWire.parseRequest(connection.buffer) == nil && connection.buffer.filter({ $0 == 0 }).count >= 3) {
                connections[fd] = nil
                drop = true
                return
            }
            // A complete request becomes a prompt in `admitWaiting`, once the process tree is checked.
            connections[fd] = connection
        }
        if drop { closeDescriptor(fd) }
        if let event { sink.yield(event) }
    }

    /// Turns a complete request of an admitted connection into an open prompt. Call with the lock held.
    private func promoteLocked(_ fd: Int32) -> AskpassEvent? {
        guard var connection = connections[fd], connection.prompt == nil,
              let request = AskpassWire.parseRequest(connection.buffer) else { return nil }
        let id = nextID
        nextID += 1
        connection.prompt = id
        connection.buffer = []
        connections[fd] = connection
        open[id] = fd
        let messages = master?.cursor?.takeNew() ?? ""
        return .prompt(LoginPrompt(id: id, text: request.prompt, hint: AskpassHint(rawValue: request.hint) ?? .answer, messages: messages))
    }

    private func shutDown() {
        let (fds, withdrawn): ([Int32], [Int]) = lock.withLock {
            let fds = Array(connections.keys)
            let ids = open.keys.sorted()
            connections = [:]
            open = [:]
            return (fds, ids)
        }
        for fd in fds { closeDescriptor(fd) }
        closeDescriptor(listener)
        unlink(socketPath)
        closeDescriptor(wake.read)
        closeDescriptor(wake.write)
        for id in withdrawn { sink.yield(.withdrawn(id)) }
        sink.finish()
        loopDone.signal()
    }

    static func isDescendant(_ pid: Int32, of ancestor: Int32) -> Bool {
        var current = pid
        for _ in 0..<64 {
            if current == ancestor { return true }
            guard current > 1, let parent = ProcessTable.parent(of: current) else { return false }
            current = parent
        }
        return false
    }
}

/// Reads what a log file gained since the last read: the master's stderr between two prompts.
package final class LogCursor: @unchecked Sendable {
    package let path: String
    private let lock = NSLock()
    private var offset: UInt64

    package init(path: String, offset: UInt64) {
        self.path = path
        self.offset = offset
    }

    /// The text appended since the previous call (or since `offset`).
    package func takeNew() -> String {
        lock.withLock {
            guard let handle = FileHandle(forReadingAtPath: path) else { return "" }
            defer { try? handle.close() }
            try? handle.seek(toOffset: offset)
            let data = (try? handle.readToEnd()) ?? Data()
            offset += UInt64(data.count)
            return String(decoding: data, as: UTF8.self)
        }
    }
}

// File-scope wrappers: inside the relay, `accept` and `close` name its own methods.
private func acceptConnection(_ fd: Int32, _ address: UnsafeMutablePointer<sockaddr>?, _ length: UnsafeMutablePointer<socklen_t>?) -> Int32 {
    accept(fd, address, length)
}

private func closeDescriptor(_ fd: Int32) {
    _ = close(fd)
}
