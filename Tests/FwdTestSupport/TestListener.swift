import Foundation
import FwdCore
#if canImport(Glibc)
import Glibc
#endif

/// A listening socket for a test to point fwd or a client at: TCP on 127.0.0.1 or a given address (port 0:
/// the kernel picks), or a UNIX socket path. One accept thread treats every connection as `behaviour` says.
/// `stopAccepting()` leaves the socket listening unanswered (connections still complete in the backlog);
/// `stop()`, or letting the listener go, closes it and every connection it kept. Built on FwdCore's
/// descriptor layer (`TCPListener`, `UnixSocket`, `Posix.accept`, `Reactor.waitBlocking`), so the tests open
/// sockets the way fwd does.
package final class TestListener: @unchecked Sendable {
    package enum Behaviour: Sendable {
        /// Accept and close at once.
        case close
        /// Accept and keep the connection open and silent until `stop()`.
        case hold
        /// Send `greeting` on connect, then keep the connection, or close it (`thenClose`, as a service that
        /// speaks first and hangs up).
        case greet(String, thenClose: Bool)
        /// Run `handler` on a thread of its own with the connection (blocking, reads give up after 3 s so
        /// `stop()` never hangs on a silent client); it returns whether to keep the connection open.
        case handle(@Sendable (Int32) -> Bool)
    }

    /// The bound port (0 for a UNIX socket).
    package let port: Int
    // Owned by the accept thread, so the listener can be let go (and stop) while that thread runs.
    private let loop: Loop

    /// Listens on `host`:`port`.
    package init(host: String = "127.0.0.1", port: Int = 0, backlog: Int32 = 64, _ behaviour: Behaviour) throws {
        let listening: TCPListener.Listening
        do {
            listening = try TCPListener.listen(host: host, port: port, backlog: backlog)
        } catch {
            throw SupportError(description: "cannot listen on \(host):\(port): \(error)")
        }
        self.port = listening.port
        loop = Loop(listener: listening.socket.release(), unixPath: nil, behaviour: behaviour)
    }

    /// Listens on the UNIX socket `path` (a stale file there is removed first; `stop()` removes the socket).
    package init(unixPath path: String, backlog: Int32 = 64, _ behaviour: Behaviour) throws {
        unlink(path)
        let socket: Descriptor
        do {
            socket = try UnixSocket.listen(path: path, backlog: backlog, nonBlocking: false)
        } catch {
            throw SupportError(description: "cannot listen on \(path): \(error)")
        }
        port = 0
        loop = Loop(listener: socket.release(), unixPath: path, behaviour: behaviour)
    }

    deinit { loop.stop() }

    /// Leaves a UNIX socket file at `path` that nobody listens on: what a SIGKILLed master leaves behind.
    package static func deadSocket(at path: String) throws {
        do {
            _ = try UnixSocket.listen(path: path, backlog: 1, nonBlocking: false)
        } catch {
            throw SupportError(description: "cannot bind \(path): \(error)")
        }
    }

    /// Stops accepting; the socket stays open, so new connections wait in the backlog unanswered.
    package func stopAccepting() { loop.stopAccepting() }

    /// Stops accepting, waits for running handlers, and closes every kept connection and the socket.
    package func stop() { loop.stop() }

    private final class Loop: @unchecked Sendable {
        let listener: Int32
        let unixPath: String?
        let behaviour: Behaviour
        let lock = NSLock()
        var accepting = true
        var stopped = false
        var kept: [Int32] = []
        let acceptorDone = DispatchSemaphore(value: 0)
        let handlers = DispatchGroup()

        init(listener: Int32, unixPath: String?, behaviour: Behaviour) {
            self.listener = listener
            self.unixPath = unixPath
            self.behaviour = behaviour
            Thread.detachNewThread { self.acceptLoop() }
        }

        private func acceptLoop() {
            defer { acceptorDone.signal() }
            while lock.withLock({ accepting }) {
                guard Reactor.waitBlocking(listener, for: .read, until: .now + .milliseconds(20)) == .ready,
                      let connection = try? Posix.accept(listener, nonBlocking: false) else { continue }
                serve(connection.release())
            }
        }

        private func serve(_ connection: Int32) {
            switch behaviour {
            case .close:
                Descriptor(connection).close()
            case .hold:
                keep(connection)
            case .greet(let greeting, let thenClose):
                _ = Posix.sendAll(connection, Array(greeting.utf8))
                if thenClose { Descriptor(connection).close() } else { keep(connection) }
            case .handle(let handler):
                Posix.setTimeout(connection, SO_RCVTIMEO, seconds: 3)
                handlers.enter()
                Thread.detachNewThread { [self] in
                    defer { handlers.leave() }
                    if handler(connection) { keep(connection) } else { Descriptor(connection).close() }
                }
            }
        }

        private func keep(_ connection: Int32) { lock.withLock { kept.append(connection) } }

        func stopAccepting() {
            let wasAccepting = lock.withLock {
                defer { accepting = false }
                return accepting
            }
            if wasAccepting { acceptorDone.wait() }
        }

        func stop() {
            stopAccepting()
            handlers.wait()
            let open: [Int32]? = lock.withLock {
                guard !stopped else { return nil }
                stopped = true
                defer { kept = [] }
                return kept + [listener]
            }
            guard let open else { return }
            for fd in open { Descriptor(fd).close() }
            if let unixPath { unlink(unixPath) }
        }
    }
}
