import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Serves `GET /metrics` on `[metrics] listen` (TCP or a UNIX socket), with the process's `Reactor` like the
/// control socket: no thread per client, nothing that blocks. HTTP/1.1 is read strictly and only as far as a
/// scrape needs: one request per connection (the reply closes it), a size limit on the request head, a
/// deadline for the whole exchange, a cap on connections at once. Anything else gets a 4xx and is closed,
/// so a client that stalls, floods or speaks something else holds up no scrape and no tunnel.
final class MetricsServer: Sendable {
    static let requestLimit = 8 * 1024
    static let deadline: Duration = .seconds(5)
    static let connectionLimit = 16

    let listen: MetricsListen
    private let acceptor: Locked<Task<Void, Never>?>
    private let open = Locked(0)

    init(_ listen: MetricsListen, body: @escaping @Sendable () -> String) throws(MetricsServerError) {
        self.listen = listen
        let raw: Int32
        do {
            switch listen {
            case .tcp(let host, let port):
                let listening = try TCPListener.listen(host: host, port: port, backlog: 64, nonBlocking: true)
                raw = listening.socket.release()
            case .unix(let path):
                switch UnixSocket.removeStale(path) {
                case .nothing, .staleSocket: break
                case .liveSocket: throw MetricsServerError("another program already listens on \(path)")
                case .otherFile: throw MetricsServerError("\(path) exists and is not a socket; fwd does not replace it")
                }
                raw = try UnixSocket.listen(path: path, backlog: 64, nonBlocking: true).release()
            }
        } catch let error as MetricsServerError {
            throw error
        } catch {
            throw MetricsServerError("cannot serve metrics on \(listen): \(error)")
        }
        // A UNIX socket admits this user only (as the control socket does); TCP has no peer credentials.
        var anyPeer = true
        if case .unix = listen { anyPeer = false }
        let (open, tcp) = (self.open, anyPeer)
        acceptor = Locked(Task {
            let socket = Descriptor(raw)
            await UnixSocket.acceptLoop(socket, anyPeer: tcp, room: { open.current < Self.connectionLimit }) { client in
                open.withLock { $0 += 1 }
                let fd = client.release()
                Task {
                    let connection = Descriptor(fd)
                    await Self.serve(connection.raw, body: body)
                    connection.close()
                    open.withLock { $0 -= 1 }
                }
                return true
            }
        })
    }

    /// Stops listening (a UNIX socket's file, which fwd made, is removed); a scrape being answered finishes.
    func stop() {
        guard let task = acceptor.withLock({ current in defer { current = nil }; return current }) else { return }
        task.cancel()
        if case .unix(let path) = listen { unlink(path) }
    }

    /// Reads one request head and answers it.
    static func serve(_ fd: Int32, body: @Sendable () -> String) async {
        let until = ContinuousClock.now + deadline
        var input: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        let terminator: [UInt8] = Array("\r\n\r\n".utf8)
        while true {
            if let end = input.firstRange(of: terminator) {
                guard end.lowerBound <= requestLimit else {
                    _ = await write(fd, response(431, "the request head is larger than \(requestLimit) bytes\n"), until: until)
                    return
                }
                let reply = respond(to: Array(input[..<end.lowerBound]), body: body)
                _ = await write(fd, reply, until: until)
                return
            }
            if input.count > requestLimit {
                _ = await write(fd, response(431, "the request head is larger than \(requestLimit) bytes\n"), until: until)
                return
            }
            let n = recv(fd, &chunk, chunk.count, 0)
            if n > 0 {
                input += chunk[..<n]
                continue
            }
            if n == 0 { return }  // closed before a whole request: nothing to answer
            if errno == EINTR { continue }
            guard errno == EAGAIN || errno == EWOULDBLOCK else { return }
            switch await Reactor.shared.wait(fd, for: .read, until: until) {
            case .ready: continue
            case .timedOut:
                _ = await write(fd, response(408, "no whole request arrived within \(deadline)\n"), until: ContinuousClock.now + .seconds(1))
                return
            case .cancelled, .closed, .failed: return
            }
        }
    }

    /// The reply to a request head (without its final blank line).
    static func respond(to head: [UInt8], body: () -> String) -> [UInt8] {
        guard let text = String(validating: head, as: UTF8.self) else { return response(400, "the request is not UTF-8\n") }
        let lines = text.components(separatedBy: "\r\n")
        let start = lines[0].split(separator: " ", omittingEmptySubsequences: false)
        guard start.count == 3 else { return response(400, "expected a request line like GET /metrics HTTP/1.1\n") }
        let (method, target, version) = (start[0], start[1], start[2])
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else { return response(505, "only HTTP/1.1 and HTTP/1.0 are served\n") }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            // No folded lines, no space before the colon (RFC 9112 5.1, 5.2).
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex,
                  !line[..<colon].contains(where: { $0 == " " || $0 == "\t" }) else {
                return response(400, "malformed header line\n")
            }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        if version == "HTTP/1.1", headers["host"] == nil { return response(400, "an HTTP/1.1 request needs a Host header\n") }
        if headers["transfer-encoding"] != nil || (headers["content-length"].map { $0 != "0" } ?? false) {
            return response(400, "a scrape has no request body\n")
        }
        guard method == "GET" || method == "HEAD" else { return response(405, "only GET is served\n", extra: "Allow: GET, HEAD\r\n") }
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0]
        guard path == "/metrics" else { return response(404, "fwd serves /metrics only\n") }
        return response(200, body(), type: MetricsText.contentType, headOnly: method == "HEAD")
    }

    static func response(_ status: Int, _ body: String, type: String = "text/plain; charset=utf-8", extra: String = "",
                         headOnly: Bool = false) -> [UInt8] {
        let reason = [200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
                      431: "Request Header Fields Too Large", 505: "HTTP Version Not Supported"][status] ?? "Error"
        let bytes = Array(body.utf8)
        let head = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(type)\r\nContent-Length: \(bytes.count)\r\n\(extra)Connection: close\r\n\r\n"
        return Array(head.utf8) + (headOnly ? [] : bytes)
    }

    /// Writes all of `bytes` by `until`; false if the client went away or did not read in time.
    static func write(_ fd: Int32, _ bytes: [UInt8], until: ContinuousClock.Instant) async -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Posix.sendSome(fd, $0) }
            if n > 0 {
                offset += n
                continue
            }
            if n < 0 && errno == EINTR { continue }
            guard n < 0, errno == EAGAIN || errno == EWOULDBLOCK else { return false }
            guard case .ready = await Reactor.shared.wait(fd, for: .write, until: until) else { return false }
        }
        return true
    }
}

struct MetricsServerError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
