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
/// after the master has exited.
///
/// No thread of its own: the listener and each connection are a task waiting on the process's `Reactor`. A
/// connection's descriptor belongs to its task, and the table below only lists it while that task runs, so a
/// write under the lock never reaches a closed or reused number.
package final class AskpassRelay: @unchecked Sendable {
    package let socketPath: String
    package let events: AsyncStream<AskpassEvent>
    /// Add these to the master's environment. No secret: only where to ask.
    package let environment: [String: String]

    private struct Connection {
        var buffer: [UInt8] = []
        var prompt: Int?
        var peer: UnixSocket.Peer
        var task: Task<Void, Never>?
    }

    private struct Master {
        var pid: Int32
        var cursor: LogCursor?
        var onCancel: @Sendable () -> Void
    }

    private struct State {
        var connections: [Int32: Connection] = [:]
        var open: [Int: Int32] = [:]
        var master: Master?
        var nextID = 1
        var closed = false
        var refused = 0
        var acceptor: Task<Void, Never>?
    }

    private let state = Locked(State())
    private let sink: AsyncStream<AskpassEvent>.Continuation

    /// Listens on a fresh socket in `directory` (created 0700 and owned by this user if missing; keep it short,
    /// e.g. the control directory). `askpassProgram` is the fwd executable (`/proc/self/exe`).
    package init(directory: String, askpassProgram: String) throws {
        try FileSystem.makeSocketDirectory(directory)
        let path = "\(directory)/\(Self.socketPrefix)\(UUID().uuidString.prefix(8).lowercased())"
        guard path.utf8.count <= UnixSocket.pathLimit else { throw AskpassRelayError.socketPathTooLong(path) }
        socketPath = path
        environment = [
            "SSH_ASKPASS": askpassProgram,
            "SSH_ASKPASS_REQUIRE": "force",
            AskpassClient.socketVariable: path,
        ]
        let listener: Descriptor
        do {
            listener = try UnixSocket.listen(path: path, backlog: 16, nonBlocking: true)
        } catch {
            throw AskpassRelayError.listen(path: path, errno: error.code)
        }
        (events, sink) = AsyncStream<AskpassEvent>.makeStream()
        // A noncopyable value cannot be captured: the task takes the number and owns it from there.
        let raw = listener.release()
        let task = Task { [weak self] in await Self.acceptLoop(Descriptor(raw), relay: self) }
        state.withLock { $0.acceptor = task }
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
        state.withLock {
            $0.master = Master(pid: masterPid, cursor: stderrLog.map { LogCursor(path: $0, offset: stderrOffset) }, onCancel: onCancel)
        }
        admitWaiting()
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
        let sent: Bool = state.withLock { state in
            guard let fd = state.open.removeValue(forKey: id) else { return false }
            var reply = AskpassWire.answerReply(answer)
            _ = Posix.sendAll(fd, reply)
            for i in reply.indices { reply[i] = 0 }
            return true
        }
        if !sent { throw .unknownPrompt(id) }
    }

    /// Refuses prompt `id`: ends the master through `onCancel`, then tells the askpass to fail.
    package func cancel(_ id: Int) {
        let (fd, onCancel) = state.withLock { ($0.open.removeValue(forKey: id), $0.master?.onCancel) }
        guard let fd else { return }
        onCancel?()
        // Only if that askpass is still connected: the table lists a descriptor only while its task holds it.
        state.withLock { if $0.connections[fd]?.prompt == id { _ = Posix.sendAll(fd, AskpassWire.cancelReply) } }
    }

    /// Prompts waiting for an answer.
    package var openPrompts: [Int] { state.withLock { $0.open.keys.sorted() } }

    /// Connections turned away (another uid, or not the master's process tree).
    package var refusedConnections: Int { state.withLock { $0.refused } }

    /// Stops listening, withdraws every open prompt, ends `events`. Close it after the master has stopped: an
    /// askpass whose connection closes exits 1, which a live ssh reads as an empty answer. Each descriptor is
    /// closed by its own task as it ends, right after this returns.
    package func close() {
        let taken: (tasks: [Task<Void, Never>], withdrawn: [Int])? = state.withLock { state in
            guard !state.closed else { return nil }
            state.closed = true
            let tasks = state.connections.values.compactMap(\.task) + [state.acceptor].compactMap { $0 }
            let withdrawn = state.open.keys.sorted()
            state.connections = [:]
            state.open = [:]
            state.acceptor = nil
            return (tasks, withdrawn)
        }
        guard let taken else { return }
        unlink(socketPath)
        for task in taken.tasks { task.cancel() }
        for id in taken.withdrawn { sink.yield(.withdrawn(id)) }
        sink.finish()
    }

    private static func acceptLoop(_ listener: consuming Descriptor, relay: AskpassRelay?) async {
        weak let relay = relay
        await UnixSocket.acceptLoop(listener, room: { relay?.hasRoom ?? true }, refused: { relay?.state.withLock { $0.refused += 1 } }) { client in
            guard let relay else { return false }
            relay.admit(client)
            return true
        }
    }

    private var hasRoom: Bool { state.withLock { $0.connections.count } < UnixSocket.connectionLimit }

    /// A new askpass connection (from this user: `UnixSocket.acceptLoop` checked), served by a task of its own.
    private func admit(_ client: consuming Descriptor) {
        let fd = client.raw
        guard let peer = UnixSocket.peer(of: fd) else { return }
        let accepted: Bool = state.withLock { state in
            guard !state.closed else { return false }
            state.connections[fd] = Connection(peer: peer)
            return true
        }
        guard accepted else { return }
        let raw = client.release()
        let task = Task { [weak self] in
            let connection = Descriptor(raw)
            await self?.serve(connection)
        }
        state.withLock { if $0.connections[fd] != nil { $0.connections[fd]?.task = task } else { task.cancel() } }
        admitWaiting()
    }

    /// Reads one connection until it closes, is refused or the relay closes; then the descriptor closes.
    private func serve(_ connection: borrowing Descriptor) async {
        let fd = connection.raw
        var scratch = [UInt8](repeating: 0, count: 4096)
        defer { forget(fd) }
        while true {
            let n = recv(fd, &scratch, scratch.count, 0)
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                switch await Reactor.shared.wait(fd, for: .read) {
                case .ready, .timedOut: continue
                case .cancelled, .closed, .failed: return
                }
            }
            guard received(fd, n > 0 ? Array(scratch[0..<n]) : nil) else { return }
            admitWaiting()
        }
    }

    /// Removes the connection from the table before its task closes the descriptor; withdraws its prompt.
    private func forget(_ fd: Int32) {
        let event: AskpassEvent? = state.withLock { state in
            guard let connection = state.connections.removeValue(forKey: fd) else { return nil }
            if let id = connection.prompt, state.open.removeValue(forKey: id) != nil { return .withdrawn(id) }
            return nil
        }
        if let event { sink.yield(event) }
    }

    /// Once the master is known: drops connections from outside its process tree and turns complete requests
    /// into prompts (a request can arrive before `attach`).
    private func admitWaiting() {
        var rejected: [Task<Void, Never>] = []
        var prompts: [AskpassEvent] = []
        state.withLock { state in
            guard let master = state.master else { return }
            for (fd, connection) in state.connections where connection.prompt == nil {
                if !Self.isDescendant(connection.peer.pid, of: master.pid) {
                    state.connections[fd] = nil
                    state.refused += 1
                    if let task = connection.task { rejected.append(task) }
                } else if let event = Self.promote(fd, in: &state) {
                    prompts.append(event)
                }
            }
        }
        for task in rejected { task.cancel() }
        for event in prompts { sink.yield(event) }
    }

    /// `bytes` nil means EOF or error: the askpass has gone. Returns false when the connection is done.
    private func received(_ fd: Int32, _ bytes: [UInt8]?) -> Bool {
        state.withLock { state in
            guard var connection = state.connections[fd], let bytes else { return false }
            // One request per connection; anything after it is ignored.
            guard connection.prompt == nil else { return true }
            connection.buffer += bytes
            if connection.buffer.count > AskpassWire.requestLimit
                || (AskpassWire.parseRequest(connection.buffer) == nil && connection.buffer.filter({ $0 == 0 }).count >= 3) {
                return false
            }
            // A complete request becomes a prompt in `admitWaiting`, once the process tree is checked.
            state.connections[fd] = connection
            return true
        }
    }

    /// Turns a complete request of an admitted connection into an open prompt.
    private static func promote(_ fd: Int32, in state: inout State) -> AskpassEvent? {
        guard var connection = state.connections[fd], connection.prompt == nil,
              let request = AskpassWire.parseRequest(connection.buffer) else { return nil }
        let id = state.nextID
        state.nextID += 1
        connection.prompt = id
        connection.buffer = []
        state.connections[fd] = connection
        state.open[id] = fd
        let messages = state.master?.cursor?.takeNew() ?? ""
        return .prompt(LoginPrompt(id: id, text: request.prompt, hint: AskpassHint(rawValue: request.hint) ?? .answer, messages: messages))
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

    /// The text appended since the previous call (or since `offset`): its last `LogFile.tailLimit` bytes at most,
    /// and all of the file when it was truncated meanwhile (`LogFile.truncateIfFull`).
    package func takeNew() -> String {
        lock.withLock {
            let (text, end) = LogFile.tailAndEnd(path, from: offset)
            offset = end
            return text
        }
    }
}
