#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a socket probe connects: the listen side of a -L/-D forward on this machine.
enum ProbeAddress: Sendable, Equatable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)

    /// A forward's listener as a client reaches it. Wildcard and unspecified binds are reached on loopback.
    init(listen endpoint: ForwardEndpoint, port allocated: Int? = nil) {
        switch endpoint {
        case .unix(let path): self = .unix(path: path)
        case .tcp(let host, let port): self = .tcp(host: Self.connectHost(forBind: host), port: port == 0 ? allocated ?? 0 : port)
        }
    }

    static func connectHost(forBind host: String?) -> String {
        guard let host else { return "127.0.0.1" }
        switch host.lowercased() {
        case "", "*", "0.0.0.0", "localhost": return "127.0.0.1"
        case "::": return "::1"
        default: return host
        }
    }

    var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): path
        }
    }
}

enum ConnectFailure: Error {
    /// Nothing listens (ECONNREFUSED, or no socket file).
    case refused(String)
    case timedOut
    case failed(String)
}

enum ReadResult: Equatable {
    case bytes([UInt8])
    /// EOF or a reset: the peer is gone.
    case closed
    case timedOut
    case failed(String)
}

enum WriteResult: Equatable {
    case written
    case closed
    case timedOut
    case failed(String)
}

/// A connected, non-blocking, close-on-exec stream socket that closes itself when it goes out of scope, so
/// no path through a probe can leak it.
struct ProbeSocket: ~Copyable {
    let fd: Int32

    private init(fd: Int32) { self.fd = fd }

    deinit { _ = systemClose(fd) }

    static func connect(to address: ProbeAddress, until deadline: ContinuousClock.Instant) throws(ConnectFailure) -> ProbeSocket {
        switch address {
        case .unix(let path):
            var addr = sockaddr_un()
            let capacity = MemoryLayout.size(ofValue: addr.sun_path)
            let bytes = Array(path.utf8)
            guard bytes.count < capacity else {
                throw .failed("the socket path is longer than \(capacity - 1) bytes")
            }
            addr.sun_family = sa_family_t(AF_UNIX)
            #if canImport(Darwin)
            addr.sun_len = UInt8(MemoryLayout<sockaddr_un>.size)
            #endif
            withUnsafeMutableBytes(of: &addr.sun_path) { buffer in
                buffer.copyBytes(from: bytes)
                buffer[bytes.count] = 0
            }
            return try connect(family: AF_UNIX, address: withUnsafeBytes(of: &addr) { Array($0) }, isUnix: true, until: deadline)
        case .tcp(let host, let port):
            let addresses = try resolve(host: host, port: port)
            var lastFailure = ConnectFailure.failed("\(host) has no address")
            for candidate in addresses {
                do throws(ConnectFailure) {
                    return try connect(family: candidate.family, address: candidate.address, isUnix: false, until: deadline)
                } catch .timedOut {
                    throw .timedOut
                } catch {
                    lastFailure = error
                }
            }
            throw lastFailure
        }
    }

    private struct Resolved {
        var family: Int32
        var address: [UInt8]
    }

    /// getaddrinfo may block on a hostname; listen addresses are nearly always literals, which it parses at once.
    private static func resolve(host: String, port: Int) throws(ConnectFailure) -> [Resolved] {
        var hints = addrinfo()
        hints.ai_socktype = streamSocketType
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let first = list else {
            throw .failed("cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(first) }
        var result: [Resolved] = []
        var entry: UnsafeMutablePointer<addrinfo>? = first
        while let current = entry {
            if let addr = current.pointee.ai_addr {
                let length = Int(current.pointee.ai_addrlen)
                let bytes = Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(addr), count: length))
                result.append(Resolved(family: current.pointee.ai_family, address: bytes))
            }
            entry = current.pointee.ai_next
        }
        return result
    }

    private static func connect(family: Int32, address: [UInt8], isUnix: Bool,
                                until deadline: ContinuousClock.Instant) throws(ConnectFailure) -> ProbeSocket {
        #if canImport(Darwin)
        let fd = socket(family, SOCK_STREAM, 0)
        #else
        let fd = socket(family, streamSocketType | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        #endif
        guard fd >= 0 else { throw .failed("socket(): \(errorText(errno))") }
        let sock = ProbeSocket(fd: fd)
        #if canImport(Darwin)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
        let rc = address.withUnsafeBytes { raw in
            raw.withMemoryRebound(to: sockaddr.self) { systemConnect(fd, $0.baseAddress, socklen_t(raw.count)) }
        }
        if rc == 0 { return sock }
        var code = errno
        if code == EINPROGRESS || code == EINTR {
            switch waitFor(fd: fd, events: Int16(POLLOUT), until: deadline) {
            case .timedOut: throw .timedOut
            case .failed(let text): throw .failed(text)
            case .ready:
                var soError: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length) == 0 else {
                    throw .failed("getsockopt(SO_ERROR): \(errorText(errno))")
                }
                if soError == 0 { return sock }
                code = soError
            }
        }
        switch code {
        case ECONNREFUSED: throw .refused(errorText(code))
        case ENOENT where isUnix: throw .refused(errorText(code))
        case ETIMEDOUT: throw .timedOut
        // A UNIX socket whose accept backlog is full: the listener exists but does not keep up.
        case EAGAIN where isUnix: throw .timedOut
        default: throw .failed(errorText(code))
        }
    }

    /// Reads whatever is available, up to `limit` bytes, waiting until `deadline` for the first byte.
    func read(upTo limit: Int, until deadline: ContinuousClock.Instant) -> ReadResult {
        var buffer = [UInt8](repeating: 0, count: limit)
        while true {
            switch waitFor(fd: fd, events: Int16(POLLIN), until: deadline) {
            case .timedOut: return .timedOut
            case .failed(let text): return .failed(text)
            case .ready: break
            }
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, limit, 0) }
            if count > 0 { return .bytes(Array(buffer[..<count])) }
            if count == 0 { return .closed }
            switch errno {
            case EAGAIN, EWOULDBLOCK, EINTR: continue
            case ECONNRESET, ECONNABORTED, EPIPE: return .closed
            case let code: return .failed(errorText(code))
            }
        }
    }

    /// Reads until at least `count` bytes arrived (or EOF / the deadline); returns what it has.
    func read(atLeast count: Int, until deadline: ContinuousClock.Instant) -> (bytes: [UInt8], end: ReadResult?) {
        var collected: [UInt8] = []
        while collected.count < count {
            switch read(upTo: 512, until: deadline) {
            case .bytes(let more): collected += more
            case let end: return (collected, end)
            }
        }
        return (collected, nil)
    }

    func write(_ bytes: [UInt8], until deadline: ContinuousClock.Instant) -> WriteResult {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { raw in
                send(fd, raw.baseAddress! + offset, raw.count - offset, noSignalFlag)
            }
            if sent >= 0 {
                offset += sent
                continue
            }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK:
                switch waitFor(fd: fd, events: Int16(POLLOUT), until: deadline) {
                case .ready: continue
                case .timedOut: return .timedOut
                case .failed(let text): return .failed(text)
                }
            case EPIPE, ECONNRESET: return .closed
            case let code: return .failed(errorText(code))
            }
        }
        return .written
    }
}

private enum PollOutcome {
    case ready
    case timedOut
    case failed(String)
}

/// POLLHUP/POLLERR count as ready: the following recv/send/SO_ERROR reports what happened.
private func waitFor(fd: Int32, events: Int16, until deadline: ContinuousClock.Instant) -> PollOutcome {
    var entry = pollfd(fd: fd, events: events, revents: 0)
    while true {
        let left = deadline - .now
        if left <= .zero {
            // One last non-blocking look, so an answer that is already there is not reported as a timeout.
            return poll(&entry, 1, 0) > 0 ? .ready : .timedOut
        }
        let (seconds, attoseconds) = left.components
        let milliseconds = min(Int64(Int32.max), seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
        let rc = poll(&entry, 1, Int32(milliseconds))
        if rc > 0 { return .ready }
        if rc < 0 && errno != EINTR { return .failed("poll(): \(errorText(errno))") }
    }
}

func errorText(_ code: Int32) -> String {
    String(cString: strerror(code))
}

#if canImport(Darwin)
private let streamSocketType = SOCK_STREAM
// Darwin has no MSG_NOSIGNAL; SO_NOSIGPIPE is set on the socket instead.
private let noSignalFlag: Int32 = 0
#else
private let streamSocketType = Int32(SOCK_STREAM.rawValue)
private let noSignalFlag = Int32(MSG_NOSIGNAL)
#endif

private func systemClose(_ fd: Int32) -> Int32 {
    #if canImport(Darwin)
    Darwin.close(fd)
    #elseif canImport(Musl)
    Musl.close(fd)
    #else
    Glibc.close(fd)
    #endif
}

private func systemConnect(_ fd: Int32, _ address: UnsafePointer<sockaddr>?, _ length: socklen_t) -> Int32 {
    #if canImport(Darwin)
    Darwin.connect(fd, address, length)
    #elseif canImport(Musl)
    Musl.connect(fd, address, length)
    #else
    Glibc.connect(fd, address, length)
    #endif
}
