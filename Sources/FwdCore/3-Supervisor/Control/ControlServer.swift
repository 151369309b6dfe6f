import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Serves the control socket without a thread or a blocking call per client: the listener and every
/// connection are tasks waiting on the process's `Reactor`. A request line has a size limit and a read
/// timeout, and a client that stops reading its stream is dropped, so a silent or slow client never holds up
/// another client or any tunnel.
final class ControlServer: Sendable {
    typealias Handler = @Sendable (ControlRequest, ControlConnection) async -> Void

    private let path: String
    private let acceptor: Locked<Task<Void, Never>?>

    init(paths: FwdPaths, handler: @escaping Handler) throws {
        path = paths.supervisorSocket
        try FileSystem.makeSocketDirectory(paths.controlDirectory)
        // Only a process holding the supervisor lock gets here, so an existing socket file is stale.
        unlink(path)
        let listener: Descriptor
        do {
            listener = try UnixSocket.listen(path: path, backlog: 128, nonBlocking: true)
        } catch {
            throw FileSystemError.failed(path: paths.supervisorSocket, action: "listen on", errno: error.code)
        }
        // The task owns the listener from here (a noncopyable value cannot be captured).
        let raw = listener.release()
        acceptor = Locked(Task { await Self.acceptLoop(Descriptor(raw), handler: handler) })
    }

    /// Connections being served; at `UnixSocket.connectionLimit` accepting pauses until one closes.
    private static let open = Locked(0)

    private static func acceptLoop(_ listener: consuming Descriptor, handler: @escaping Handler) async {
        await UnixSocket.acceptLoop(listener, room: { open.withLock { $0 } < UnixSocket.connectionLimit }) { client in
            open.withLock { $0 += 1 }
            ControlConnection.start(client, handler: handler).onClose { open.withLock { $0 -= 1 } }
            return true
        }
    }

    /// Stops taking connections; the ones already open finish what they are doing.
    func stop() {
        guard let task = acceptor.withLock({ current in defer { current = nil }; return current }) else { return }
        unlink(path)
        task.cancel()
    }
}

/// One client of the control server. Its descriptor belongs to its reader task, which closes it only after
/// the connection is shut and its writer task (if any) has ended, so no write or wait ever meets a closed or
/// reused number. Replies are queued and written without blocking.
final class ControlConnection: Sendable {
    private struct State {
        var output: [UInt8] = []
        var gotRequest = false
        var closed = false
        var closeAfterWrite = false
        /// A write failed (the client went away): the connection is shut by whoever saw it.
        var broken = false
        var closeHandlers: [@Sendable () -> Void] = []
        var reader: Task<Void, Never>?
        /// Waits for room in the socket while replies are queued.
        var writer: Task<Void, Never>?
        var timer: Task<Void, Never>?
    }

    private let fd: Int32
    private let handler: ControlServer.Handler
    private let state = Locked(State())
    /// Lines after the request (prompt answers), each within the request's size limit; kept until `onLine`.
    private let lines: AsyncStream<Data>
    private let lineSink: AsyncStream<Data>.Continuation

    @discardableResult
    static func start(_ client: consuming Descriptor, handler: @escaping ControlServer.Handler) -> ControlConnection {
        let connection = ControlConnection(fd: client.raw, handler: handler)
        let raw = client.release()
        let reader = Task {
            let socket = Descriptor(raw)
            await connection.readLoop()
            connection.shut()
            await connection.state.withLock({ $0.writer })?.value
            socket.close()
        }
        let timer = Task {
            try? await Task.sleep(for: .seconds(Control.requestTimeout))
            if !Task.isCancelled, !connection.state.withLock({ $0.gotRequest }) {
                connection.fail(.timedOut(seconds: Int(Control.requestTimeout)))
            }
        }
        connection.state.withLock {
            $0.reader = reader
            $0.timer = timer
        }
        return connection
    }

    private init(fd: Int32, handler: @escaping ControlServer.Handler) {
        self.fd = fd
        self.handler = handler
        (lines, lineSink) = AsyncStream<Data>.makeStream()
    }

    /// Queues one reply line. Returns false once the connection is closed (the client went away or was
    /// dropped for not reading).
    @discardableResult
    func send(_ reply: ControlReply) -> Bool {
        let (open, overflow) = state.withLock { state -> (Bool, Bool) in
            guard !state.closed else { return (false, false) }
            state.output.append(contentsOf: Control.line(reply))
            flush(&state)
            return (!state.closed, state.broken || state.output.count > Control.replyBacklogLimit)
        }
        if overflow { shut() }
        return open && !overflow
    }

    /// Sends the last reply and closes once it is written.
    func finish(_ reply: ControlReply) {
        let done = state.withLock { state -> Bool in
            guard !state.closed else { return false }
            state.output.append(contentsOf: Control.line(reply))
            state.closeAfterWrite = true
            flush(&state)
            return state.output.isEmpty || state.broken
        }
        if done { shut() }
    }

    /// Sends the last reply and returns once it is written and the connection closed (or the client went away).
    func finishWritten(_ reply: ControlReply) async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            onClose { done.resume() }
            finish(reply)
        }
    }

    /// Hands every further line the client sends after its request to `body`, in order (lines that arrived
    /// before are handed over at once).
    func onLine(_ body: @escaping @Sendable (Data) -> Void) {
        let lines = self.lines
        Task {
            for await line in lines { body(line) }
        }
    }

    /// Runs `body` when the connection closes (at once when it already has).
    func onClose(_ body: @escaping @Sendable () -> Void) {
        let now: Bool = state.withLock {
            if $0.closed { return true }
            $0.closeHandlers.append(body)
            return false
        }
        if now { body() }
    }

    /// Reads until the client closes, the connection is shut, or an error.
    private func readLoop() async {
        var input: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        defer { for i in input.indices { input[i] = 0 } }
        while true {
            let n = recv(fd, &chunk, chunk.count, 0)
            if n < 0 {
                if errno == EINTR { continue }
                guard errno == EAGAIN || errno == EWOULDBLOCK else { return }
                switch await Reactor.shared.wait(fd, for: .read) {
                case .ready, .timedOut: continue
                case .cancelled, .closed, .failed: return
                }
            }
            let gotRequest = state.withLock { $0.gotRequest }
            if n == 0 {
                // The client closed its end: a request without its newline is still read.
                if !gotRequest && !input.isEmpty { take(Data(input)) }
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
                    input = []
                    continue
                } else {
                    continue
                }
            }
            // Lines after the request; one longer than the limit ends the connection.
            while let newline = input.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Data(input[..<newline])
                for i in input.startIndex...newline { input[i] = 0 }
                input.removeSubrange(...newline)
                lineSink.yield(line)
            }
            if input.count > Control.requestLimit { return }
        }
    }

    private func take(_ line: Data) {
        let timer = state.withLock { state -> Task<Void, Never>? in
            state.gotRequest = true
            return state.timer
        }
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
        state.withLock { $0.gotRequest = true }
        finish(.failed(failure))
    }

    /// Writes what it can without blocking; the rest waits for the socket to drain, in a writer task.
    private func flush(_ state: inout State) {
        while !state.output.isEmpty && !state.closed {
            let n = state.output.withUnsafeBytes { Posix.sendSome(fd, $0) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    if state.writer == nil { state.writer = Task { await self.drain() } }
                    return
                }
                state.output = []
                state.broken = true
                return
            }
            state.output.removeFirst(n)
        }
    }

    private func drain() async {
        while true {
            switch await Reactor.shared.wait(fd, for: .write) {
            case .ready, .timedOut: break
            case .cancelled, .closed, .failed: return
            }
            let (pending, closeNow) = state.withLock { state -> (Bool, Bool) in
                flush(&state)
                let pending = !state.output.isEmpty && !state.closed
                if !pending { state.writer = nil }
                return (pending, !pending && (state.closeAfterWrite || state.broken))
            }
            if closeNow { shut() }
            if !pending { return }
        }
    }

    /// Closes the connection: no more writes, the reader ends (and with it the descriptor), close handlers run.
    private func shut() {
        let taken = state.withLock { state -> (handlers: [@Sendable () -> Void], tasks: [Task<Void, Never>])? in
            guard !state.closed else { return nil }
            state.closed = true
            state.output = []
            let tasks = [state.reader, state.writer, state.timer].compactMap { $0 }
            defer { state.closeHandlers = [] }
            return (state.closeHandlers, tasks)
        }
        guard let taken else { return }
        lineSink.finish()
        for task in taken.tasks { task.cancel() }
        for body in taken.handlers { body() }
    }
}
