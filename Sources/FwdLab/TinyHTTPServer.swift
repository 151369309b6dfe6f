#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import FwdCore

/// Free TCP ports on the loopback interface.
package enum LocalPort {
    /// A port that was free a moment ago (bound to 0 and released); racy by nature, fine for tests.
    package static func free(host: String = "127.0.0.1") throws -> Int {
        do {
            return try TCPListener.listen(host: host, port: 0, backlog: 1).port
        } catch {
            throw LabError.socket("bind \(host):0: \(error)")
        }
    }

    /// `count` different ports that were free a moment ago: each stays bound until all are chosen, so two
    /// calls cannot hand out one port twice (the kernel may reuse a port just released).
    package static func free(count: Int, host: String = "127.0.0.1") throws -> [Int] {
        var held: [Int32] = [], ports: [Int] = []
        defer { for fd in held { Descriptor(fd).close() } }
        for _ in 0..<count {
            do {
                let listening = try TCPListener.listen(host: host, port: 0, backlog: 1)
                ports.append(listening.port)
                held.append(listening.socket.release())
            } catch {
                throw LabError.socket("bind \(host):0: \(error)")
            }
        }
        return ports
    }

    /// True if something accepts TCP connections on host:port right now.
    package static func isAccepting(host: String = "127.0.0.1", port: Int, timeout: Double = 1) -> Bool {
        (try? connectSocket(host: host, port: port, deadline: Date().addingTimeInterval(timeout))).map { close($0); return true } ?? false
    }

    /// Connects with a deadline (non-blocking connect, then a wait); returns a blocking socket the caller closes.
    static func connectSocket(host: String, port: Int, deadline: Date) throws -> Int32 {
        var lastError = "no address"
        let addresses: [SocketAddress]
        do {
            addresses = try Resolver.resolve(host: host, port: port, names: .numeric(localhost: true))
        } catch {
            throw LabError.socket("\(error.description) (use a numeric address or localhost)")
        }
        for address in addresses {
            let socket = try Posix.streamSocket(family: address.family, nonBlocking: true)
            var rc = address.withSockaddr { connect(socket.raw, $0, $1) }
            if rc != 0 && errno == EINPROGRESS {
                let until = ContinuousClock.now + .seconds(max(0, deadline.timeIntervalSinceNow))
                guard Reactor.waitBlocking(socket.raw, for: .write, until: until) == .ready else {
                    throw LabError.httpTimeout(host: host, port: port, phase: "connect")
                }
                var err: Int32 = 0
                var len = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(socket.raw, SOL_SOCKET, SO_ERROR, &err, &len)
                rc = err == 0 ? 0 : -1
                errno = err
            }
            if rc == 0 {
                _ = fcntl(socket.raw, F_SETFL, fcntl(socket.raw, F_GETFL) & ~O_NONBLOCK)
                return socket.release()
            }
            lastError = Posix.errorText()
        }
        throw LabError.httpConnect(host: host, port: port, reason: lastError)
    }
}

/// A minimal HTTP server answering every request with the same page ("intranet wiki" for the demo and tests).
package final class TinyHTTPServer: @unchecked Sendable {
    package let port: Int
    private let state: State

    // Owned by the accept thread, so the server object itself can be deinitialised while it runs.
    private final class State: @unchecked Sendable {
        let fd: Int32
        let response: [UInt8]
        let lock = NSLock()
        var stopped = false
        var count = 0
        let finished = DispatchSemaphore(value: 0)
        init(fd: Int32, response: [UInt8]) { self.fd = fd; self.response = response }
        var isStopped: Bool { lock.withLock { stopped } }
    }

    package init(host: String = "127.0.0.1", port: Int = 0, body: String) throws {
        let listening: TCPListener.Listening
        do {
            listening = try TCPListener.listen(host: host, port: port, backlog: 64)
        } catch {
            throw LabError.socket("cannot listen on \(host):\(port): \(error)")
        }
        self.port = listening.port
        // The accept thread's state owns the number; `stop` closes it once that thread has left.
        let fd = listening.socket.release()

        let payload = Array(body.utf8)
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: \(payload.count)\r\nConnection: close\r\n\r\n"
        let state = State(fd: fd, response: Array(head.utf8) + payload)
        self.state = state
        let thread = Thread { TinyHTTPServer.acceptLoop(state) }
        thread.name = "TinyHTTPServer:\(self.port)"
        thread.start()
    }

    deinit { stop() }

    package var requestCount: Int { state.lock.withLock { state.count } }

    package func stop() {
        let first = state.lock.withLock {
            defer { state.stopped = true }
            return !state.stopped
        }
        guard first else { return }
        // The loop polls with a short timeout; close only after it has left, so the fd can't be reused under it.
        state.finished.wait()
        close(state.fd)
    }

    private static func acceptLoop(_ state: State) {
        defer { state.finished.signal() }
        while !state.isStopped {
            var pfd = pollfd(fd: state.fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 100) == 1 else { continue }
            let conn = accept(state.fd, nil, nil)
            guard conn >= 0 else { continue }
            _ = fcntl(conn, F_SETFD, FD_CLOEXEC)
            // One short-lived thread per connection so an idle client (e.g. a browser preconnect) can't stall others.
            Thread.detachNewThread { serve(conn, state) }
        }
    }

    private static func serve(_ conn: Int32, _ state: State) {
        defer { close(conn) }
        #if canImport(Darwin)
        var one: Int32 = 1
        setsockopt(conn, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
        Posix.setTimeout(conn, SO_RCVTIMEO, seconds: 2)
        Posix.setTimeout(conn, SO_SNDTIMEO, seconds: 2)
        var request: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 2048)
        let end: [UInt8] = Array("\r\n\r\n".utf8)
        while request.count < 8192 {
            let n = recv(conn, &buf, buf.count, 0)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            request += buf[0..<n]
            if request.firstRange(of: end) != nil { break }
        }
        // A bare connect/close (port probe) is not a request.
        guard !request.isEmpty else { return }
        if Posix.sendAll(conn, state.response) {
            state.lock.withLock { state.count += 1 }
        }
        shutdown(conn, Int32(SHUT_WR))
    }
}

package struct HTTPResponse: Sendable {
    package var status: Int
    package var body: String
}

package enum HTTPGet {
    /// Connects to host:port (numeric IPv4/IPv6 or "localhost"), sends `GET path HTTP/1.1` with Host and Connection: close,
    /// reads the whole response within `timeout` seconds. Throws a clear error on refused/timeout/EOF-before-status-line.
    package static func fetch(host: String, port: Int, path: String = "/", timeout: Double = 5) throws -> HTTPResponse {
        let deadline = Date().addingTimeInterval(timeout)
        let fd = try LocalPort.connectSocket(host: host, port: port, deadline: deadline)
        defer { close(fd) }

        let hostHeader = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        let request = "GET \(path) HTTP/1.1\r\nHost: \(hostHeader)\r\nUser-Agent: fwd\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        Posix.setTimeout(fd, SO_SNDTIMEO, seconds: deadline.timeIntervalSinceNow)
        guard Posix.sendAll(fd, Array(request.utf8)) else {
            throw LabError.httpConnect(host: host, port: port, reason: "send failed: \(Posix.errorText())")
        }

        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        while true {
            let remaining = deadline.timeIntervalSinceNow
            if remaining <= 0 { throw LabError.httpTimeout(host: host, port: port, phase: "response") }
            Posix.setTimeout(fd, SO_RCVTIMEO, seconds: remaining)
            let n = recv(fd, &buf, buf.count, 0)
            if n > 0 { data += buf[0..<n]; continue }
            if n == 0 { break }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { throw LabError.httpTimeout(host: host, port: port, phase: "response") }
            if errno == ECONNRESET && !data.isEmpty { break }
            throw LabError.httpNoResponse(host: host, port: port, detail: Posix.errorText())
        }
        return try parse(data, host: host, port: port)
    }

    static func parse(_ data: [UInt8], host: String, port: Int) throws -> HTTPResponse {
        guard !data.isEmpty else {
            throw LabError.httpNoResponse(host: host, port: port, detail: "connection closed before the status line")
        }
        let sep = Array("\r\n\r\n".utf8)
        let headEnd = data.firstRange(of: sep)
        let head = String(decoding: data[..<(headEnd?.lowerBound ?? data.endIndex)], as: UTF8.self)
        let lines = head.components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let status = Int(parts[1]) else {
            throw LabError.httpMalformed(host: host, port: port, detail: "bad status line \(lines[0].prefix(80).debugDescription)")
        }
        var body = headEnd.map { Array(data[$0.upperBound...]) } ?? []
        for line in lines.dropFirst() {
            let kv = line.split(separator: ":", maxSplits: 1)
            if kv.count == 2, kv[0].lowercased() == "content-length",
               let length = Int(kv[1].trimmingCharacters(in: .whitespaces)), length < body.count {
                body = Array(body[..<length])
            }
        }
        return HTTPResponse(status: status, body: String(decoding: body, as: UTF8.self))
    }
}
