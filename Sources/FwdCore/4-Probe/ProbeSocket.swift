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

/// A connected, non-blocking, close-on-exec stream that closes itself when it goes out of scope, so no path
/// through a probe can leak it. Usually one socket; a channel through the master is two socketpair ends
/// (`fd` reads what the master writes, `writeFD` carries what the master reads), so the master's EOF on one
/// direction shows at once, plus the control connection the channel lives on.
struct ProbeSocket: ~Copyable {
    let fd: Int32
    let writeFD: Int32
    /// A descriptor that must stay open as long as this stream: the master's control connection, without
    /// which the master closes the channel.
    let held: Int32

    init(fd: Int32, writeFD: Int32? = nil, held: Int32 = -1) {
        self.fd = fd
        self.writeFD = writeFD ?? fd
        self.held = held
    }

    deinit {
        _ = systemClose(fd)
        if writeFD != fd { _ = systemClose(writeFD) }
        if held >= 0 { _ = systemClose(held) }
    }

    /// Connects without suspending on the poller; for callers outside a probe (the supervisor's port check).
    static func connect(to address: ProbeAddress, until deadline: ContinuousClock.Instant) throws(ConnectFailure) -> ProbeSocket {
        try connect(to: address) { (fd: Int32) throws(ConnectFailure) in try blockingWait(fd: fd, events: Int16(POLLOUT), until: deadline) }
    }

    static func connect(to address: ProbeAddress, until deadline: ContinuousClock.Instant) async throws(ConnectFailure) -> ProbeSocket {
        let candidates = try await candidates(for: address)
        var lastFailure = ConnectFailure.failed("\(address) has no address")
        for candidate in candidates {
            do throws(ConnectFailure) {
                var done = false
                let socket = try startConnect(candidate, done: &done)
                if done { return socket }
                let outcome = await IOPoller.shared.wait(fd: socket.fd, events: Int16(POLLOUT), until: deadline)
                return try finishConnect(socket, outcome, isUnix: candidate.family == AF_UNIX)
            } catch .timedOut {
                throw .timedOut
            } catch {
                lastFailure = error
            }
        }
        throw lastFailure
    }

    private static func connect(to address: ProbeAddress,
                                wait: (Int32) throws(ConnectFailure) -> PollOutcome) throws(ConnectFailure) -> ProbeSocket {
        var lastFailure = ConnectFailure.failed("\(address) has no address")
        for candidate in try resolve(address) {
            do throws(ConnectFailure) {
                var done = false
                let socket = try startConnect(candidate, done: &done)
                if done { return socket }
                let outcome = try wait(socket.fd)
                return try finishConnect(socket, outcome, isUnix: candidate.family == AF_UNIX)
            } catch .timedOut {
                throw .timedOut
            } catch {
                lastFailure = error
            }
        }
        throw lastFailure
    }

    struct Resolved: Sendable {
        var family: Int32
        var address: [UInt8]
    }

    /// Literal addresses are parsed at once; a name goes to getaddrinfo on a thread of its own, since it may
    /// block on DNS (listen addresses are nearly always literals, so that thread is rare).
    private static func candidates(for address: ProbeAddress) async throws(ConnectFailure) -> [Resolved] {
        if case .tcp(let host, _) = address, !isNumeric(host) {
            let result = await offPool { Result { () throws(ConnectFailure) in try resolve(address) } }
            return try result.get()
        }
        return try resolve(address)
    }

    private static func isNumeric(_ host: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    private static func resolve(_ address: ProbeAddress) throws(ConnectFailure) -> [Resolved] {
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
            return [Resolved(family: AF_UNIX, address: withUnsafeBytes(of: &addr) { Array($0) })]
        case .tcp(let host, let port):
            return try resolve(host: host, port: port)
        }
    }

    /// getaddrinfo may block on a hostname; literals it parses at once.
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

    /// `done` tells whether the connect completed at once (loopback often does) or is in progress.
    private static func startConnect(_ candidate: Resolved, done: inout Bool) throws(ConnectFailure) -> ProbeSocket {
        let isUnix = candidate.family == AF_UNIX
        #if canImport(Darwin)
        let fd = socket(candidate.family, SOCK_STREAM, 0)
        #else
        let fd = socket(candidate.family, streamSocketType | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        #endif
        guard fd >= 0 else { throw .failed("socket(): \(errorText(errno))") }
        let sock = ProbeSocket(fd: fd)
        #if canImport(Darwin)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
        let rc = candidate.address.withUnsafeBytes { raw in
            raw.withMemoryRebound(to: sockaddr.self) { systemConnect(fd, $0.baseAddress, socklen_t(raw.count)) }
        }
        done = rc == 0
        if done { return sock }
        let code = errno
        if code == EINPROGRESS || code == EINTR { return sock }
        throw connectFailure(code, isUnix: isUnix)
    }

    private static func finishConnect(_ sock: consuming ProbeSocket, _ outcome: PollOutcome, isUnix: Bool) throws(ConnectFailure) -> ProbeSocket {
        switch outcome {
        case .timedOut: throw .timedOut
        case .failed(let text): throw .failed(text)
        case .ready:
            var soError: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(sock.fd, SOL_SOCKET, SO_ERROR, &soError, &length) == 0 else {
                throw .failed("getsockopt(SO_ERROR): \(errorText(errno))")
            }
            if soError == 0 { return sock }
            throw connectFailure(soError, isUnix: isUnix)
        }
    }

    private static func connectFailure(_ code: Int32, isUnix: Bool) -> ConnectFailure {
        switch code {
        case ECONNREFUSED: .refused(errorText(code))
        case ENOENT where isUnix: .refused(errorText(code))
        case ETIMEDOUT: .timedOut
        // A UNIX socket whose accept backlog is full: the listener exists but does not keep up.
        case EAGAIN where isUnix: .timedOut
        default: .failed(errorText(code))
        }
    }

    /// Reads whatever is available, up to `limit` bytes, waiting until `deadline` for the first byte.
    func read(upTo limit: Int, until deadline: ContinuousClock.Instant) async -> ReadResult {
        var buffer = [UInt8](repeating: 0, count: limit)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, limit, 0) }
            if count > 0 { return .bytes(Array(buffer[..<count])) }
            if count == 0 { return .closed }
            switch errno {
            case EAGAIN, EWOULDBLOCK, EINTR:
                switch await IOPoller.shared.wait(fd: fd, events: Int16(POLLIN), until: deadline) {
                case .timedOut: return .timedOut
                case .failed(let text): return .failed(text)
                case .ready: continue
                }
            case ECONNRESET, ECONNABORTED, EPIPE: return .closed
            case let code: return .failed(errorText(code))
            }
        }
    }

    /// Reads until at least `count` bytes arrived (or EOF / the deadline); returns what it has.
    func read(atLeast count: Int, until deadline: ContinuousClock.Instant) async -> (bytes: [UInt8], end: ReadResult?) {
        var collected: [UInt8] = []
        while collected.count < count {
            switch await read(upTo: 4096, until: deadline) {
            case .bytes(let more): collected += more
            case let end: return (collected, end)
            }
        }
        return (collected, nil)
    }

    func write(_ bytes: [UInt8], until deadline: ContinuousClock.Instant) async -> WriteResult {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { raw in
                send(writeFD, raw.baseAddress! + offset, raw.count - offset, noSignalFlag)
            }
            if sent >= 0 {
                offset += sent
                continue
            }
            switch errno {
            case EINTR: continue
            case EAGAIN, EWOULDBLOCK:
                switch await IOPoller.shared.wait(fd: writeFD, events: Int16(POLLOUT), until: deadline) {
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

/// POLLHUP/POLLERR count as ready: the following recv/send/SO_ERROR reports what happened.
private func blockingWait(fd: Int32, events: Int16, until deadline: ContinuousClock.Instant) throws(ConnectFailure) -> PollOutcome {
    var entry = pollfd(fd: fd, events: events, revents: 0)
    while true {
        let rc = poll(&entry, 1, IOPoller.milliseconds(until: deadline, from: .now))
        if rc > 0 { return .ready }
        if rc == 0 { return .timedOut }
        if errno != EINTR { return .failed("poll(): \(errorText(errno))") }
    }
}

func errorText(_ code: Int32) -> String {
    String(cString: strerror(code))
}

#if canImport(Darwin)
let streamSocketType = SOCK_STREAM
// Darwin has no MSG_NOSIGNAL; SO_NOSIGPIPE is set on the socket instead.
let noSignalFlag: Int32 = 0
#else
let streamSocketType = Int32(SOCK_STREAM.rawValue)
let noSignalFlag = Int32(MSG_NOSIGNAL)
#endif

func systemClose(_ fd: Int32) -> Int32 {
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
